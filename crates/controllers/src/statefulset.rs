//! Not written yet: waits until dropped so the manager does not restart it in a loop.

use crate::context::Context;
use crate::error::Result;

pub async fn run(_ctx: Context) -> Result<()> {
    std::future::pending().await
}
