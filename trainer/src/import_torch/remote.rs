//! A file on a web server, read in byte ranges through a local cache: `trainer download
//! celeba-reference` opens the reference checkpoint through it, so only what the conversion reads
//! crosses the network (the zip's directory, its pickle and the EMA tensors; not the raw weights
//! or the optimizer state), and a download that stopped goes on where it stopped.
//!
//! The cache holds one folder per URL: `data`, the file's bytes at their own offsets (sparse
//! where nothing was fetched), and `state.json`: the URL, the file's length and validators (ETag,
//! Last-Modified) and the byte ranges of `data` that hold the server's bytes. A range is recorded
//! only after its bytes are written, so a killed download never leaves a range claimed that is not
//! whole; a file whose length or validators changed on the server starts over.
//!
//! A server without byte ranges (it answers a range request with the whole file) is downloaded
//! whole into `data.part`, renamed to `data` once its length checks out; it cannot be resumed.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest, Sha256};

pub use super::cache::default_cache;
use super::cache::CacheState;
use super::http::{agent, content_range, header};
use crate::path_error::PathError;

/// The least that a read that misses the cache fetches (zip headers and the pickle are small
/// reads close together).
const READ_AHEAD: u64 = 1 << 20;
/// The most one request asks for: what a stop can lose, and how often progress is saved.
const CHUNK: u64 = 8 << 20;
/// Tries per request before giving up (a body cut short, a reset connection).
const ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("could not download {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}: the server sent {got} of the {want} bytes asked for ({what}), {ATTEMPTS} times; run the command again to go on from what is cached")]
    Truncated {
        url: String,
        what: String,
        got: u64,
        want: u64,
    },
    #[error("{url}: the download ended after {got} of {want} bytes, and this server does not allow resuming (no byte ranges); run the command again to start over")]
    WholeTruncated { url: String, got: u64, want: u64 },
    #[error("{url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error(transparent)]
    Io(#[from] PathError),
}

impl RemoteError {
    fn protocol(url: &str, reason: String) -> Self {
        Self::Protocol {
            url: url.into(),
            reason,
        }
    }
}

/// How far a transfer is: `done` of `total` bytes of `what`.
#[derive(Clone, Debug)]
pub struct Transfer {
    pub what: String,
    pub done: u64,
    pub total: u64,
}

/// The callback that sees each [`Transfer`] as it moves.
pub type OnTransfer = Box<dyn FnMut(&Transfer)>;

struct Inner {
    /// The URL asked for (for messages), and where its redirects ended (for range requests).
    url: String,
    target: String,
    dir: PathBuf,
    data: File,
    state: CacheState,
    agent: ureq::Agent,
    on_transfer: OnTransfer,
    /// Bytes that came over the network in this process.
    fetched: u64,
    /// Why a read through [`RemoteReader`] failed (its caller sees only an I/O error).
    failure: Option<RemoteError>,
}

/// A remote file, opened through its cache. Clones share one cache and connection settings.
#[derive(Clone)]
pub struct RemoteFile(Rc<RefCell<Inner>>);

impl RemoteFile {
    /// Asks the server for `url`'s length and whether it serves byte ranges, and opens the
    /// cache for it under `cache`. Without byte ranges the whole file is downloaded now (unless
    /// the cache already holds it whole).
    pub fn open(url: &str, cache: &Path, mut on_transfer: OnTransfer) -> Result<Self, RemoteError> {
        let agent = agent();
        let unreachable = |reason: String| RemoteError::Unreachable {
            url: url.into(),
            reason,
        };
        let mut response = agent
            .get(url)
            .header("Range", "bytes=0-0")
            .call()
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let target = ureq::ResponseExt::get_uri(&response).to_string();
        let mut now = CacheState {
            url: url.into(),
            etag: header(&response, "etag"),
            last_modified: header(&response, "last-modified"),
            ..Default::default()
        };
        let ranges = match status {
            206 => {
                let (_, _, total) = header(&response, "content-range")
                    .as_deref()
                    .and_then(content_range)
                    .ok_or_else(|| {
                        RemoteError::protocol(
                            url,
                            "a 206 answer without a valid Content-Range".into(),
                        )
                    })?;
                now.len = total;
                true
            }
            200 => {
                now.len = header(&response, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                false
            }
            404 => return Err(unreachable("the server has no such file (HTTP 404)".into())),
            other => return Err(unreachable(format!("HTTP {other}"))),
        };

        let dir = cache.join(
            Sha256::digest(url.as_bytes())
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
        std::fs::create_dir_all(&dir).map_err(PathError::at(&dir))?;
        let state_path = dir.join("state.json");
        let cached: Option<CacheState> = std::fs::read(&state_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let data_path = dir.join("data");
        let mut state = match cached {
            Some(c) if c.same_file(&now) && data_path.exists() => c,
            _ => {
                // Nothing cached, or another file's bytes: start over.
                let _ = std::fs::remove_file(&data_path);
                now.clone()
            }
        };

        let mut fetched = 0;
        if !ranges && (state.len == 0 || state.held() < state.len) {
            // The body of this answer is the whole file: keep it.
            let got = download_whole(&mut response, &dir, now.len, &mut on_transfer).map_err(
                |e| match e {
                    WholeError::Io(e) => RemoteError::Io(e),
                    WholeError::Short(got) => RemoteError::WholeTruncated {
                        url: url.into(),
                        got,
                        want: now.len,
                    },
                },
            )?;
            state = CacheState { len: got, ..now };
            state.insert(0, got);
            fetched = got;
        }
        drop(response);

        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(PathError::at(&data_path))?;
        data.set_len(state.len).map_err(PathError::at(&data_path))?;
        let file = Self(Rc::new(RefCell::new(Inner {
            url: url.into(),
            target,
            dir,
            data,
            state,
            agent,
            on_transfer,
            fetched,
            failure: None,
        })));
        file.0.borrow().save()?;
        Ok(file)
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.0.borrow().state.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the file already in the cache.
    pub fn cached(&self) -> u64 {
        self.0.borrow().state.held()
    }

    /// Bytes of the file that came over the network since [`RemoteFile::open`] began (a whole
    /// download included; the probe's one byte not).
    pub fn fetched(&self) -> u64 {
        self.0.borrow().fetched
    }

    /// A reader from the start of the file.
    pub fn reader(&self) -> RemoteReader {
        RemoteReader {
            file: self.clone(),
            pos: 0,
        }
    }

    /// Fetches every part of `spans` that the cache lacks, reporting progress as `what`.
    pub fn prefetch(&self, spans: &[std::ops::Range<u64>], what: &str) -> Result<(), RemoteError> {
        let mut inner = self.0.borrow_mut();
        let len = inner.state.len;
        let gaps: Vec<(u64, u64)> = spans
            .iter()
            .flat_map(|s| inner.state.missing(s.start.min(len), s.end.min(len)))
            .collect();
        let total: u64 = gaps.iter().map(|(a, b)| b - a).sum();
        let mut done = 0;
        for (a, b) in gaps {
            inner.fetch(a, b, what, &mut done, total)?;
        }
        Ok(())
    }

    /// The network failure behind the last failed read, if that is why it failed.
    pub fn take_failure(&self) -> Option<RemoteError> {
        self.0.borrow_mut().failure.take()
    }

    /// Forgets everything cached for this file (its bytes turned out not to be what was wanted).
    pub fn forget(&self) {
        let inner = self.0.borrow();
        let _ = std::fs::remove_dir_all(&inner.dir);
    }
}

enum WholeError {
    Io(PathError),
    Short(u64),
}

/// Streams `response`'s body into `dir/data.part` and renames it to `dir/data` when `want`
/// bytes (or, `want` = 0: an unknown length, every byte to the end) arrived.
fn download_whole(
    response: &mut ureq::http::Response<ureq::Body>,
    dir: &Path,
    want: u64,
    on_transfer: &mut OnTransfer,
) -> Result<u64, WholeError> {
    let part = dir.join("data.part");
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| WholeError::Io(PathError::at(&p)(e))
    };
    let mut out = File::create(&part).map_err(io(&part))?;
    let mut body = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let mut cut = false;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            // A connection cut short, even where the length was not announced.
            Err(_) => {
                cut = true;
                break;
            }
        };
        out.write_all(&buf[..n]).map_err(io(&part))?;
        got += n as u64;
        on_transfer(&Transfer {
            what: "the whole file (this server sends no byte ranges)".into(),
            done: got,
            total: want,
        });
    }
    out.sync_all().map_err(io(&part))?;
    if cut || (want > 0 && got != want) {
        let _ = std::fs::remove_file(&part);
        return Err(WholeError::Short(got));
    }
    let data = dir.join("data");
    std::fs::rename(&part, &data).map_err(io(&data))?;
    Ok(got)
}

impl Inner {
    fn save(&self) -> Result<(), PathError> {
        let path = self.dir.join("state.json");
        let json = serde_json::to_vec(&self.state).expect("plain data serialises");
        crate::atomic::write(&path, &json).map_err(PathError::at(&path))
    }

    /// Fetches `[start, end)` in requests of at most [`CHUNK`] bytes, writes each to `data` and
    /// records it, adding what it wrote to `done` and reporting `done` of `total` bytes of `what`.
    fn fetch(
        &mut self,
        start: u64,
        end: u64,
        what: &str,
        done: &mut u64,
        total: u64,
    ) -> Result<(), RemoteError> {
        let mut at = start;
        while at < end {
            let stop = end.min(at + CHUNK);
            let bytes = self.get_range(at, stop)?;
            self.data
                .seek(SeekFrom::Start(at))
                .and_then(|_| self.data.write_all(&bytes))
                .and_then(|_| self.data.flush())
                .map_err(PathError::at(&self.dir.join("data")))?;
            self.state.insert(at, stop);
            self.save()?;
            self.fetched += stop - at;
            *done += stop - at;
            (self.on_transfer)(&Transfer {
                what: what.into(),
                done: *done,
                total,
            });
            at = stop;
        }
        Ok(())
    }

    /// One range request, tried up to [`ATTEMPTS`] times.
    fn get_range(&self, start: u64, end: u64) -> Result<Vec<u8>, RemoteError> {
        let want = end - start;
        let what = format!("bytes {start}-{}", end - 1);
        // Why the last attempt failed: no answer at all, or an answer cut short.
        let mut failure = None;
        for _ in 0..ATTEMPTS {
            let response = self
                .agent
                .get(&self.target)
                .header("Range", format!("bytes={start}-{}", end - 1))
                .call();
            let mut response = match response {
                Ok(r) => r,
                Err(e) => {
                    failure = Some(RemoteError::Unreachable {
                        url: self.url.clone(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let status = response.status().as_u16();
            if status != 206 {
                return Err(RemoteError::protocol(
                    &self.url,
                    format!("asked for {what}, the server answered HTTP {status} (it no longer serves byte ranges?); run the command again"),
                ));
            }
            match header(&response, "content-range").as_deref().and_then(content_range) {
                Some((a, b, total)) if (a, b) == (start, end) && total == self.state.len => {}
                found => {
                    return Err(RemoteError::protocol(
                        &self.url,
                        format!("asked for {what} of a {} byte file, the server sent {found:?}: the file changed on the server; run the command again to start over", self.state.len),
                    ))
                }
            }
            let mut bytes = Vec::with_capacity(want as usize);
            let read = response
                .body_mut()
                .with_config()
                .limit(want + 1)
                .reader()
                .take(want)
                .read_to_end(&mut bytes);
            if read.is_ok() && bytes.len() as u64 == want {
                return Ok(bytes);
            }
            failure = Some(RemoteError::Truncated {
                url: self.url.clone(),
                what: what.clone(),
                got: bytes.len() as u64,
                want,
            });
        }
        Err(failure.expect("at least one attempt"))
    }
}

/// A position in a [`RemoteFile`]: `Read + Seek`, fetching what a read needs that the cache lacks.
pub struct RemoteReader {
    file: RemoteFile,
    pos: u64,
}

impl Read for RemoteReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut inner = self.file.0.borrow_mut();
        let len = inner.state.len;
        if self.pos >= len || buf.is_empty() {
            return Ok(0);
        }
        let end = len.min(self.pos + buf.len() as u64);
        if !inner.state.missing(self.pos, end).is_empty() {
            let ahead = len.min(self.pos + READ_AHEAD.max(end - self.pos));
            for (a, b) in inner.state.missing(self.pos, ahead) {
                let what = "the checkpoint's directory and pickle";
                if let Err(e) = inner.fetch(a, b, what, &mut 0, b - a) {
                    let message = e.to_string();
                    inner.failure = Some(e);
                    return Err(std::io::Error::other(message));
                }
            }
        }
        let n = (end - self.pos) as usize;
        inner.data.seek(SeekFrom::Start(self.pos))?;
        inner.data.read_exact(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RemoteReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let len = self.file.len() as i128;
        let pos = match to {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => len + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if pos < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            ));
        }
        self.pos = pos as u64;
        Ok(self.pos)
    }
}
