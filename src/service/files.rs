//! Files: a content-addressed object store on disk (`files/ab/abcdef…`, written temp →
//! fsync → rename) with metadata and per-channel access in the database.

use super::access::channel_access;
use super::{check_name, invalid, Error, Result, Services};
use crate::model::*;
use crate::storage::{tables::*, Rows};
use crate::system::now;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn check_file_id(id: &str) -> Result<()> {
    if id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Error::NotFound("file"))
    }
}

fn check_content_type(value: &str) -> Result<String> {
    let ok = !value.is_empty()
        && value.len() <= 127
        && value.contains('/')
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if ok {
        Ok(value.to_string())
    } else {
        Err(invalid(
            "invalid_content_type",
            "content type must look like type/subtype",
        ))
    }
}

/// Checks an upload's filename: a name of at most 255 characters without slashes and
/// without any control character, line breaks and tabs included (it ends up in the
/// `Content-Disposition` header of downloads).
fn check_filename(filename: &str) -> Result<String> {
    let filename = check_name("filename", filename, 255)?;
    if filename.chars().any(char::is_control) {
        return Err(invalid(
            "invalid_field",
            "filename must not contain control characters",
        ));
    }
    if filename.contains('/') || filename.contains('\\') {
        return Err(invalid(
            "invalid_field",
            "filename must not contain slashes",
        ));
    }
    Ok(filename)
}

/// The metadata a reader of `channel_id` sees for a file: the reader's own upload there,
/// else the channel's first upload of those bytes; uploads stored before metadata was kept
/// per upload have only the file's shared row. `None` when the file is not in the channel.
pub(crate) fn upload_meta(
    tx: &crate::storage::Tx,
    channel_id: Id,
    file_id: &str,
    reader: UserId,
) -> Result<Option<FileMeta>> {
    if !tx.contains(CHANNEL_FILE, (channel_id, file_id))? {
        return Ok(None);
    }
    if let Some(own) = tx.get(CHANNEL_UPLOAD, (channel_id, file_id, reader))? {
        return Ok(Some(own));
    }
    if let Some((_, first)) = tx
        .rows(CHANNEL_UPLOAD, Rows::prefix((channel_id, file_id)).limit(1))?
        .into_iter()
        .next()
    {
        return Ok(Some(first));
    }
    Ok(tx.get(FILE, file_id)?)
}

/// Requires ATTACH_FILES (and SEND_MESSAGES) in the channel.
fn require_upload(tx: &crate::storage::Tx, channel_id: Id, actor: UserId) -> Result<()> {
    let (channel, access) = channel_access(tx, channel_id, actor)?;
    access.require_in(
        tx,
        &channel,
        Permissions::SEND_MESSAGES | Permissions::ATTACH_FILES,
    )?;
    Ok(())
}

impl Services {
    fn file_path(&self, file_id: &str) -> PathBuf {
        self.files_dir.join(&file_id[..2]).join(file_id)
    }

    /// Checks that `actor` may upload to the channel, so a refused upload is answered
    /// before its body is read.
    pub fn check_upload(&self, actor: UserId, channel_id: Id) -> Result<()> {
        self.store.read(|tx| require_upload(tx, channel_id, actor))
    }

    /// Stores an upload for a channel (ATTACH_FILES there), streaming `body` to disk
    /// (at most `max_upload_bytes`) while hashing it, so an upload never sits in memory.
    /// The bytes are on disk before the metadata commits, so a committed file always has
    /// its bytes. The metadata (name, type, uploader) belongs to this upload alone: the
    /// same bytes uploaded elsewhere keep their own.
    pub async fn upload_file(
        &self,
        actor: UserId,
        channel_id: Id,
        filename: &str,
        content_type: &str,
        body: impl futures_lite::AsyncRead + Unpin,
    ) -> Result<FileMeta> {
        let filename = check_filename(filename)?;
        let content_type = check_content_type(content_type)?;
        self.check_upload(actor, channel_id)?;
        let limit = self.config.limits.max_upload_bytes;
        let staged = self.stage_upload(body, limit).await?;
        let (file_id, size) = (staged.file_id.clone(), staged.size);
        let path = self.file_path(&file_id);
        smol::unblock(move || staged.publish(&path))
            .await
            .map_err(|e| Error::Store(crate::storage::StoreError::from(e)))?;
        let meta = FileMeta {
            file_id: file_id.clone(),
            size,
            content_type,
            filename,
            uploader: actor,
            created_at: now(),
        };
        self.store
            .write(move |tx| {
                require_upload(tx, channel_id, actor)?;
                tx.put(CHANNEL_UPLOAD, (channel_id, file_id.as_str(), actor), &meta)?;
                tx.put(CHANNEL_FILE, (channel_id, file_id.as_str()), &Present)?;
                Ok(meta)
            })
            .await
    }

    /// Copies `body` into a temporary file of the object store, hashing it on the way.
    async fn stage_upload(
        &self,
        mut body: impl futures_lite::AsyncRead + Unpin,
        limit: usize,
    ) -> Result<Staged> {
        use futures_lite::{AsyncReadExt, AsyncWriteExt};
        let io = |e: std::io::Error| Error::Store(crate::storage::StoreError::from(e));
        let mut random = [0u8; 8];
        crate::system::random_bytes(&mut random);
        let tmp = self.files_dir.join(format!(".tmp-{}", hex(&random)));
        let mut file = smol::fs::File::create(&tmp).await.map_err(io)?;
        let mut staged = Staged {
            tmp: Some(tmp),
            file_id: String::new(),
            size: 0,
        };
        let mut hasher = Sha256::new();
        let mut size = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = body.read(&mut buf).await.map_err(Error::Body)?;
            if n == 0 {
                break;
            }
            size += n;
            if size > limit {
                return Err(Error::TooLarge { limit });
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).await.map_err(io)?;
        }
        if size == 0 {
            return Err(invalid("empty_file", "the file is empty"));
        }
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        staged.file_id = hex(&hasher.finalize());
        staged.size = size as u64;
        Ok(staged)
    }

    /// Opens a file of a channel (VIEW_CHANNEL and READ_MESSAGE_HISTORY there): its
    /// metadata as the reader sees it, and its bytes to stream from disk.
    pub async fn download_file(
        &self,
        actor: UserId,
        channel_id: Id,
        file_id: &str,
    ) -> Result<(FileMeta, smol::fs::File)> {
        check_file_id(file_id)?;
        let meta = self.store.read(|tx| {
            let (channel, access) = channel_access(tx, channel_id, actor)?;
            access.require_in(tx, &channel, Permissions::READ_MESSAGE_HISTORY)?;
            upload_meta(tx, channel_id, file_id, actor)?.ok_or(Error::NotFound("file"))
        })?;
        let file = smol::fs::File::open(self.file_path(file_id))
            .await
            .map_err(|e| Error::Store(crate::storage::StoreError::from(e)))?;
        Ok((meta, file))
    }
}

/// An upload written to a temporary file, removed unless published.
struct Staged {
    tmp: Option<PathBuf>,
    file_id: String,
    size: u64,
}

impl Staged {
    /// rename → fsync(dir) to the content address. Content-addressed, so an existing
    /// file is kept and the temporary one dropped.
    fn publish(mut self, path: &std::path::Path) -> std::io::Result<()> {
        let Some(tmp) = self.tmp.take() else {
            return Ok(());
        };
        if path.exists() {
            return std::fs::remove_file(&tmp);
        }
        let dir = path
            .parent()
            .ok_or_else(|| std::io::Error::other("no parent directory"))?;
        std::fs::create_dir_all(dir)?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Retention, Store, StoreError};

    fn meta(filename: &str, uploader: UserId) -> FileMeta {
        FileMeta {
            file_id: "ab".repeat(32),
            size: 3,
            content_type: "text/plain".into(),
            filename: filename.into(),
            uploader,
            created_at: 1,
        }
    }

    /// Files uploaded before metadata was kept per upload have only the shared `file`
    /// row; they still read, and a new upload of the same bytes gets its own metadata.
    #[test]
    fn uploads_stored_before_per_upload_metadata_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_events: 10,
            max_age_secs: 10,
        };
        let store = Store::open(&dir.path().join("db"), 1 << 20, 16, retention).unwrap();
        let file_id = "ab".repeat(32);
        let (old_channel, new_channel) = (Id(10), Id(20));
        let (alice, bob) = (UserId([1; 32]), UserId([2; 32]));
        let id = file_id.clone();
        store
            .write_blocking(move |tx| {
                tx.put(FILE, &id, &meta("old.txt", alice))?;
                tx.put(CHANNEL_FILE, (old_channel, id.as_str()), &Present)?;
                tx.put(CHANNEL_FILE, (new_channel, id.as_str()), &Present)?;
                tx.put(
                    CHANNEL_UPLOAD,
                    (new_channel, id.as_str(), bob),
                    &meta("new.txt", bob),
                )?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let read = |channel, reader| {
            store
                .read(|tx| upload_meta(tx, channel, &file_id, reader))
                .unwrap()
                .map(|m| m.filename)
        };
        assert_eq!(read(old_channel, bob).as_deref(), Some("old.txt"));
        assert_eq!(read(new_channel, alice).as_deref(), Some("new.txt"));
        assert_eq!(read(new_channel, bob).as_deref(), Some("new.txt"));
        assert_eq!(read(Id(30), alice), None);
    }
}
