//! The protobuf wire format: varints and tagged fields, nothing schema-specific.

use super::ProtobufError;

pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// The next varint, or None at the end of the buffer.
    pub fn varint_opt(&mut self) -> Result<Option<u64>, ProtobufError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let mut n = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(i) else {
                return Err(ProtobufError::Wire("truncated varint"));
            };
            n |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(Some(n));
            }
        }
        Err(ProtobufError::Wire("varint too long"))
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        self.varint_opt()?
            .ok_or(ProtobufError::Wire("truncated varint"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        if self.buf.len() < n {
            return Err(ProtobufError::Wire("truncated field"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next (field number, value), or None at the end.
    pub fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, ProtobufError> {
        let Some(key) = self.varint_opt()? else {
            return Ok(None);
        };
        let tag = u32::try_from(key >> 3)
            .map_err(|_| ProtobufError::Wire("field number out of range"))?;
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(u64::from_le_bytes(
                self.take(8)?
                    .try_into()
                    .map_err(|_| ProtobufError::Wire("fixed64"))?,
            )),
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| ProtobufError::Wire("length out of range"))?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(
                self.take(4)?
                    .try_into()
                    .map_err(|_| ProtobufError::Wire("fixed32"))?,
            )),
            _ => return Err(ProtobufError::Wire("unsupported wire type")),
        };
        Ok(Some((tag, value)))
    }
}
