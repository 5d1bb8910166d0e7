//! `download` against a file server on loopback: success, wrong content, missing file, offline.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;

use trainer::data::download::{download, Fetched};

/// Serves `root`'s files over HTTP/1.1 on 127.0.0.1 for `requests` requests, then stops.
fn serve(root: &Path, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut line).unwrap();
            // Drain the headers.
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap() > 2 {
                header.clear();
            }
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            match std::fs::read(root.join(path)) {
                Ok(body) => {
                    write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .unwrap();
                    stream.write_all(&body).unwrap();
                }
                Err(_) => write!(
                    stream,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .unwrap(),
            }
        }
    });
    format!("http://{addr}")
}

fn sha_of_content(gz: &Path) -> String {
    use sha2::Digest;
    use std::io::Read;
    let mut content = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(gz).unwrap())
        .read_to_end(&mut content)
        .unwrap();
    sha2::Sha256::digest(&content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn downloads_verifies_and_skips_what_is_present() {
    let mirror_dir = tempfile::tempdir().unwrap();
    common::write_mnist(mirror_dir.path(), 10);
    let names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"];
    let shas: Vec<String> = names
        .iter()
        .map(|n| sha_of_content(&mirror_dir.path().join(format!("{n}.gz"))))
        .collect();
    let files: Vec<(&str, &str)> = names
        .iter()
        .copied()
        .zip(shas.iter().map(String::as_str))
        .collect();

    let out = tempfile::tempdir().unwrap();
    let url = serve(mirror_dir.path(), 2);
    let report = download(&url, out.path(), &files).unwrap();
    assert!(report.iter().all(|(_, f)| *f == Fetched::Downloaded));
    assert_eq!(
        trainer::data::mnist::Mnist::load(out.path(), trainer::data::mnist::Split::Train)
            .unwrap()
            .labels
            .len(),
        10
    );
    // Second run: nothing to fetch (the server is gone, so a request would fail).
    let again = download("http://127.0.0.1:9", out.path(), &files).unwrap();
    assert!(again.iter().all(|(_, f)| *f == Fetched::Present));
}

#[test]
fn wrong_content_is_refused_and_nothing_is_written() {
    let mirror_dir = tempfile::tempdir().unwrap();
    common::write_mnist(mirror_dir.path(), 10);
    let out = tempfile::tempdir().unwrap();
    let url = serve(mirror_dir.path(), 1);
    let files = [("train-labels-idx1-ubyte", "00".repeat(32))];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, s)| (*n, s.as_str())).collect();
    let err = download(&url, out.path(), &files).unwrap_err().to_string();
    assert!(
        err.contains("does not hold the expected file") && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn a_missing_file_or_no_network_says_where_to_put_the_files() {
    let empty = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let files = [("train-images-idx3-ubyte", "00")];
    let url = serve(empty.path(), 1);
    let err = download(&url, out.path(), &files).unwrap_err().to_string();
    assert!(
        err.contains("404") && err.contains(&out.path().display().to_string()),
        "{err}"
    );
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let err = download("http://127.0.0.1:9", out.path(), &files)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("offline") && err.contains("train-images-idx3-ubyte.gz"),
        "{err}"
    );
}
