//! Node-level reclaim before any pod is evicted for disk (upstream's `reclaimNodeLevelResources`
//! with the image garbage collector's `DeleteUnusedImages`): images no container uses, the
//! sandbox image and pinned images aside, are removed over CRI.

use std::collections::HashSet;

use crate::containerd::SANDBOX_IMAGE;
use crate::cri::{api, image_spec, Cri};

/// Removes the unused images; returns the bytes their sizes add up to.
pub async fn delete_unused_images(cri: &Cri) -> u64 {
    let (images, containers) = match tokio::try_join!(cri.list_images(), cri.list_containers()) {
        Ok(both) => both,
        Err(e) => {
            tracing::warn!("image garbage collection: cannot list: {e:#}");
            return 0;
        }
    };
    let in_use: HashSet<String> = containers
        .iter()
        .flat_map(|c| {
            let by_spec = c.image.as_ref().map(|i| i.image.clone());
            [Some(c.image_ref.clone()), by_spec].into_iter().flatten()
        })
        .collect();
    let mut freed = 0;
    for image in images.iter().filter(|i| unused(i, &in_use)) {
        let request = api::RemoveImageRequest {
            image: Some(image_spec(&image.id)),
        };
        match cri.images().remove_image(request).await {
            Ok(_) => {
                tracing::info!(image = %image.id, tags = ?image.repo_tags, size = image.size, "removed an unused image to free disk");
                freed += image.size;
            }
            Err(e) => tracing::warn!(image = %image.id, "cannot remove an unused image: {e}"),
        }
    }
    freed
}

fn unused(image: &api::Image, in_use: &HashSet<String>) -> bool {
    let names = || {
        std::iter::once(&image.id)
            .chain(&image.repo_tags)
            .chain(&image.repo_digests)
    };
    !image.pinned
        && !image.repo_tags.iter().any(|t| t == SANDBOX_IMAGE)
        && !names().any(|n| in_use.contains(n))
}
