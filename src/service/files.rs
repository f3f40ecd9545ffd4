//! Files: a content-addressed object store on disk (`files/ab/abcdef…`, written temp →
//! fsync → rename) with metadata and per-channel access in the database.

use super::access::channel_access;
use super::{check_name, invalid, now, Error, Result, Services};
use crate::model::*;
use crate::storage::{keys, tables::*};
use sha2::{Digest, Sha256};
use std::io::Write;
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

impl Services {
    fn file_path(&self, file_id: &str) -> PathBuf {
        self.files_dir.join(&file_id[..2]).join(file_id)
    }

    /// Stores an upload for a channel (ATTACH_FILES there). The bytes are on disk before
    /// the metadata commits, so a committed file always has its bytes.
    pub async fn upload_file(
        &self,
        actor: UserId,
        channel_id: Id,
        filename: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<FileMeta> {
        if bytes.is_empty() {
            return Err(invalid("empty_file", "the file is empty"));
        }
        if bytes.len() > self.config.limits.max_upload_bytes {
            return Err(invalid(
                "too_large",
                format!(
                    "files are limited to {} bytes",
                    self.config.limits.max_upload_bytes
                ),
            ));
        }
        let filename = check_name("filename", filename, 255)?;
        if filename.contains('/') || filename.contains('\\') {
            return Err(invalid(
                "invalid_field",
                "filename must not contain slashes",
            ));
        }
        let content_type = check_content_type(content_type)?;
        self.store.read(|tx| {
            let (channel, access) = channel_access(tx, channel_id, actor)?;
            access.require_in(
                tx,
                &channel,
                Permissions::SEND_MESSAGES | Permissions::ATTACH_FILES,
            )?;
            Ok::<_, Error>(())
        })?;
        let file_id = hex(&Sha256::digest(&bytes));
        let path = self.file_path(&file_id);
        let size = bytes.len() as u64;
        let write_path = path.clone();
        smol::unblock(move || write_durably(&write_path, &bytes))
            .await
            .map_err(|e| Error::Store(crate::storage::StoreError::Io(e.to_string())))?;
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
                let (channel, access) = channel_access(tx, channel_id, actor)?;
                access.require_in(
                    tx,
                    &channel,
                    Permissions::SEND_MESSAGES | Permissions::ATTACH_FILES,
                )?;
                if !tx.contains(FILE, file_id.as_bytes())? {
                    tx.put(FILE, file_id.as_bytes(), &meta)?;
                }
                tx.put(
                    CHANNEL_FILE,
                    &keys::join(&[&keys::id(channel_id), file_id.as_bytes()]),
                    &Present,
                )?;
                Ok(meta)
            })
            .await
    }

    /// Reads a file of a channel (VIEW_CHANNEL and READ_MESSAGE_HISTORY there).
    pub async fn download_file(
        &self,
        actor: UserId,
        channel_id: Id,
        file_id: &str,
    ) -> Result<(FileMeta, Vec<u8>)> {
        check_file_id(file_id)?;
        let meta = self.store.read(|tx| {
            let (channel, access) = channel_access(tx, channel_id, actor)?;
            access.require_in(tx, &channel, Permissions::READ_MESSAGE_HISTORY)?;
            if !tx.contains(
                CHANNEL_FILE,
                &keys::join(&[&keys::id(channel_id), file_id.as_bytes()]),
            )? {
                return Err(Error::NotFound("file"));
            }
            tx.get(FILE, file_id.as_bytes())?
                .ok_or(Error::NotFound("file"))
        })?;
        let path = self.file_path(file_id);
        let bytes = smol::unblock(move || std::fs::read(path))
            .await
            .map_err(|e| Error::Store(crate::storage::StoreError::Io(e.to_string())))?;
        Ok((meta, bytes))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// temp → fsync → rename → fsync(dir). Content-addressed, so an existing file is kept.
fn write_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let mut random = [0u8; 8];
    crate::service::random_bytes(&mut random);
    let tmp = dir.join(format!(".tmp-{}", hex(&random)));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
