//! Just enough of the flatbuffer wire format to read a `.tflite` file in place: tables through
//! their vtables, vectors, strings and scalars, every offset and length checked against the
//! buffer so that no byte string can make a read go out of bounds or an addition overflow.
//!
//! Layout reminders (flatbuffers' "binary format" documentation): all integers are little
//! endian; a table starts with an `i32` that, subtracted from the table's position, gives its
//! vtable; a vtable is `u16` vtable length, `u16` table length, then one `u16` offset per field
//! (0 = absent, else the field's offset from the table's start); a reference to a table, vector
//! or string is a `u32` offset from the reference's own position; a vector is a `u32` element
//! count followed by the elements; a string is a byte vector followed by a NUL.

use anyhow::{anyhow, ensure, Result};

/// The whole file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Buf<'a>(pub(crate) &'a [u8]);

impl<'a> Buf<'a> {
    /// `N` bytes at `at`.
    fn array<const N: usize>(self, at: usize) -> Result<[u8; N]> {
        at.checked_add(N)
            .and_then(|end| self.0.get(at..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| {
                anyhow!(
                    "malformed flatbuffer: a {N}-byte read at byte {at} runs past the end of \
                     the {}-byte file",
                    self.0.len()
                )
            })
    }

    pub(crate) fn u16(self, at: usize) -> Result<u16> {
        self.array(at).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(self, at: usize) -> Result<u32> {
        self.array(at).map(u32::from_le_bytes)
    }

    fn i32(self, at: usize) -> Result<i32> {
        self.array(at).map(i32::from_le_bytes)
    }

    /// Follows the `u32` offset stored at `at`; the target is checked to be inside the file.
    pub(crate) fn follow(self, at: usize) -> Result<usize> {
        let rel = self.u32(at)? as usize;
        at.checked_add(rel)
            .filter(|&target| target < self.0.len())
            .ok_or_else(|| {
                anyhow!(
                    "malformed flatbuffer: the offset at byte {at} points past the end of the \
                     {}-byte file",
                    self.0.len()
                )
            })
    }

    /// The bytes `at..at + len`.
    pub(crate) fn slice(self, at: usize, len: usize) -> Result<&'a [u8]> {
        at.checked_add(len)
            .and_then(|end| self.0.get(at..end))
            .ok_or_else(|| {
                anyhow!(
                    "malformed flatbuffer: {len} bytes at byte {at} run past the end of the \
                     {}-byte file",
                    self.0.len()
                )
            })
    }
}

/// A table, with its vtable located and bounds-checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table<'a> {
    buf: Buf<'a>,
    pos: usize,
    vtable: usize,
    vtable_len: usize,
    table_len: usize,
}

impl<'a> Table<'a> {
    /// The table starting at byte `pos`.
    pub(crate) fn at(buf: Buf<'a>, pos: usize) -> Result<Self> {
        let soffset = i64::from(buf.i32(pos)?);
        let vtable = usize::try_from(pos as i64 - soffset).map_err(|_| {
            anyhow!("malformed flatbuffer: the table at byte {pos} has its vtable before the file")
        })?;
        let vtable_len = usize::from(buf.u16(vtable)?);
        let table_len = usize::from(buf.u16(vtable.saturating_add(2))?);
        ensure!(
            vtable_len >= 4 && vtable_len % 2 == 0,
            "malformed flatbuffer: the vtable at byte {vtable} has length {vtable_len}"
        );
        buf.slice(vtable, vtable_len)?;
        ensure!(
            table_len >= 4,
            "malformed flatbuffer: the table at byte {pos} has length {table_len}"
        );
        buf.slice(pos, table_len)?;
        Ok(Self {
            buf,
            pos,
            vtable,
            vtable_len,
            table_len,
        })
    }

    /// Where field `id` of `size` bytes is, if present; it must lie inside the table.
    fn field(&self, id: u16, size: usize) -> Result<Option<usize>> {
        let slot = 4 + 2 * usize::from(id);
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        let offset = usize::from(self.buf.u16(self.vtable + slot)?);
        if offset == 0 {
            return Ok(None);
        }
        ensure!(
            offset >= 4 && offset + size <= self.table_len,
            "malformed flatbuffer: field {id} of the table at byte {} lies outside the table",
            self.pos
        );
        Ok(Some(self.pos + offset))
    }

    fn scalar<const N: usize>(&self, id: u16) -> Result<Option<[u8; N]>> {
        match self.field(id, N)? {
            Some(at) => self.buf.array(at).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn u8(&self, id: u16, default: u8) -> Result<u8> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0]))
    }

    pub(crate) fn i8(&self, id: u16, default: i8) -> Result<i8> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0] as i8))
    }

    pub(crate) fn bool(&self, id: u16, default: bool) -> Result<bool> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0] != 0))
    }

    pub(crate) fn i32(&self, id: u16, default: i32) -> Result<i32> {
        Ok(self.scalar(id)?.map_or(default, i32::from_le_bytes))
    }

    pub(crate) fn u32(&self, id: u16, default: u32) -> Result<u32> {
        Ok(self.scalar(id)?.map_or(default, u32::from_le_bytes))
    }

    pub(crate) fn u64(&self, id: u16, default: u64) -> Result<u64> {
        Ok(self.scalar(id)?.map_or(default, u64::from_le_bytes))
    }

    pub(crate) fn f32(&self, id: u16, default: f32) -> Result<f32> {
        Ok(self.scalar(id)?.map_or(default, f32::from_le_bytes))
    }

    /// Where the object referenced by field `id` starts, if present.
    fn reference(&self, id: u16) -> Result<Option<usize>> {
        match self.field(id, 4)? {
            Some(at) => self.buf.follow(at).map(Some),
            None => Ok(None),
        }
    }

    /// The sub-table in field `id`, if present.
    pub(crate) fn table(&self, id: u16) -> Result<Option<Table<'a>>> {
        match self.reference(id)? {
            Some(at) => Table::at(self.buf, at).map(Some),
            None => Ok(None),
        }
    }

    /// The vector of `elem`-byte elements in field `id`; absent reads as empty.
    pub(crate) fn vector(&self, id: u16, elem: usize) -> Result<Vector<'a>> {
        match self.reference(id)? {
            Some(at) => Vector::at(self.buf, at, elem),
            None => Ok(Vector {
                buf: self.buf,
                start: 0,
                len: 0,
                elem,
            }),
        }
    }

    /// The string in field `id` (its bytes, without the NUL), if present.
    pub(crate) fn string(&self, id: u16) -> Result<Option<&'a [u8]>> {
        match self.reference(id)? {
            Some(at) => Vector::at(self.buf, at, 1).map(|v| Some(v.bytes())),
            None => Ok(None),
        }
    }
}

/// A vector of fixed-size elements (scalars, or offsets to tables).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vector<'a> {
    buf: Buf<'a>,
    start: usize,
    len: usize,
    elem: usize,
}

impl<'a> Vector<'a> {
    fn at(buf: Buf<'a>, at: usize, elem: usize) -> Result<Self> {
        let len = buf.u32(at)? as usize;
        let start = at + 4; // cannot overflow: the u32 at `at` was in the buffer
        let bytes = len.checked_mul(elem).ok_or_else(|| {
            anyhow!("malformed flatbuffer: the vector at byte {at} has {len} elements")
        })?;
        buf.slice(start, bytes).map_err(|_| {
            anyhow!(
                "malformed flatbuffer: the vector at byte {at} ({len} elements of {elem} bytes) \
                 runs past the end of the {}-byte file",
                buf.0.len()
            )
        })?;
        Ok(Self {
            buf,
            start,
            len,
            elem,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw bytes of every element.
    pub(crate) fn bytes(&self) -> &'a [u8] {
        // In bounds: checked when the vector was located.
        &self.buf.0[self.start..self.start + self.len * self.elem]
    }

    fn element<const N: usize>(&self, i: usize) -> Result<[u8; N]> {
        ensure!(
            i < self.len && N == self.elem,
            "internal: element {i} of a {}-element vector",
            self.len
        );
        self.buf.array(self.start + i * N)
    }

    pub(crate) fn i32(&self, i: usize) -> Result<i32> {
        self.element(i).map(i32::from_le_bytes)
    }

    pub(crate) fn i64(&self, i: usize) -> Result<i64> {
        self.element(i).map(i64::from_le_bytes)
    }

    pub(crate) fn f32(&self, i: usize) -> Result<f32> {
        self.element(i).map(f32::from_le_bytes)
    }

    /// Element `i` of a vector of tables.
    pub(crate) fn table(&self, i: usize) -> Result<Table<'a>> {
        ensure!(
            i < self.len && self.elem == 4,
            "internal: table {i} of a {}-element vector",
            self.len
        );
        let at = self.buf.follow(self.start + i * 4)?;
        Table::at(self.buf, at)
    }
}
