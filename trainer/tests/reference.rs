//! `download celeba-reference`'s fetch-and-convert against servers on loopback: one with byte
//! ranges (only the EMA tensors cross), one without, one that cuts bodies short, a wrong file,
//! no server at all, and the command line.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dit_web::weights::{Quantization, WeightFile};
use trainer::import_torch::reference::{fetch, FetchError, Fetched};
use trainer::import_torch::{import, ImportOptions};

use crate::import_torch::resaved;

#[derive(Clone, Copy)]
enum Mode {
    /// Byte ranges honoured.
    Ranges,
    /// Every request answered with the whole file (200).
    Whole,
}

struct Server {
    url: String,
    /// Body bytes sent.
    sent: Arc<AtomicU64>,
    /// Every body that crosses this offset of the file stops there (a connection that drops);
    /// `u64::MAX` (the start): none.
    cut: Arc<AtomicU64>,
}

/// Serves `body` at `/ckpt.pt` (anything else: 404) on 127.0.0.1 until the test process ends.
fn serve(body: Vec<u8>, mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let cut = Arc::new(AtomicU64::new(u64::MAX));
    let (counter, cut_at) = (sent.clone(), cut.clone());
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (body, counter, cut_at) = (body.clone(), counter.clone(), cut_at.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let mut range = None;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                        break;
                    }
                    let lower = header.to_ascii_lowercase();
                    if let Some(spec) = lower.strip_prefix("range: bytes=") {
                        let (a, b) = spec.trim().split_once('-').unwrap();
                        range = Some((a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()));
                    }
                }
                if line.split_whitespace().nth(1) != Some("/ckpt.pt") {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    return;
                }
                let len = body.len() as u64;
                let (start, end, head) = match (mode, range) {
                    (Mode::Ranges, Some((a, b))) => (
                        a,
                        b + 1,
                        format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{len}\r\nContent-Length: {}\r\nETag: \"v1\"\r\n", b + 1 - a),
                    ),
                    _ => (0, len, format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: \"v1\"\r\n")),
                };
                let cut = cut_at.load(Ordering::SeqCst);
                let stop = if start < cut && cut < end { cut } else { end };
                let _ = write!(stream, "{head}Connection: close\r\n\r\n");
                if stream
                    .write_all(&body[start as usize..stop as usize])
                    .is_ok()
                {
                    counter.fetch_add(stop - start, Ordering::SeqCst);
                }
            });
        }
    });
    Server {
        url: format!("http://{addr}/ckpt.pt"),
        sent,
        cut,
    }
}

/// The fixture in the reference's layout as `torch.compile` saves it, with 4 MiB of other
/// state before and after the EMA tensors.
fn checkpoint() -> Vec<u8> {
    resaved("_orig_mod.", 4 << 20)
}

fn quiet() -> Box<dyn FnMut(&trainer::import_torch::remote::Transfer)> {
    Box::new(|_| {})
}

fn expected_tensors() -> WeightFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_dit.pt");
    import(&path, &ImportOptions::default()).unwrap().file
}

fn fetch_ok(url: &str, cache: &Path) -> Fetched {
    match fetch(url, cache, None, quiet()) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn with_byte_ranges_only_the_ema_tensors_cross_and_a_second_run_fetches_nothing() {
    let body = checkpoint();
    let server = serve(body.clone(), Mode::Ranges);
    let cache = tempfile::tempdir().unwrap();
    let fetched = fetch_ok(&server.url, cache.path());
    assert_eq!(fetched.imported.file.tensors, expected_tensors().tensors);
    assert!(fetched.imported.file.meta.ema);
    assert_eq!(fetched.file_len, body.len() as u64);
    // The two 4 MiB blocks of optimizer state were skipped (a read ahead may touch their ends).
    let sent = server.sent.load(Ordering::SeqCst);
    eprintln!("file {} bytes, sent {sent}", body.len());
    assert!(
        sent < body.len() as u64 / 2,
        "sent {sent} of {}",
        body.len()
    );
    assert_eq!(
        fetched.downloaded + 1,
        sent,
        "the probe's one byte, then what was counted"
    );

    let again = fetch_ok(&server.url, cache.path());
    assert_eq!(again.downloaded, 0);
    assert_eq!(again.imported.file.tensors, fetched.imported.file.tensors);
}

#[test]
fn without_byte_ranges_the_whole_file_is_downloaded_once() {
    let body = checkpoint();
    let server = serve(body.clone(), Mode::Whole);
    let cache = tempfile::tempdir().unwrap();
    let fetched = fetch_ok(&server.url, cache.path());
    assert_eq!(fetched.imported.file.tensors, expected_tensors().tensors);
    assert_eq!(fetched.cached, body.len() as u64);
    assert_eq!(fetched.downloaded, body.len() as u64);
    // The next run is answered with the whole file again (this server knows no other way), but
    // reads nothing of it: the cache is whole.
    let before = server.sent.load(Ordering::SeqCst);
    let again = fetch_ok(&server.url, cache.path());
    assert_eq!(again.downloaded, 0);
    assert!(server.sent.load(Ordering::SeqCst) - before <= body.len() as u64);
}

#[test]
fn a_cut_download_goes_on_from_the_cache() {
    let body = checkpoint();
    let cache = tempfile::tempdir().unwrap();
    // Cut in the middle of the EMA tensors (after the first padding block).
    let server = serve(body.clone(), Mode::Ranges);
    server.cut.store((4 << 20) + 20_000, Ordering::SeqCst);
    let e = fetch(&server.url, cache.path(), None, quiet())
        .err()
        .unwrap();
    let text = e.to_string();
    assert!(matches!(e, FetchError::Remote(_)), "{text}");
    assert!(
        text.contains("the server sent") && text.contains("run the command again"),
        "{text}"
    );
    // What arrived whole is kept: the next run, once the server works, needs only the rest.
    server.cut.store(u64::MAX, Ordering::SeqCst);
    let fetched = fetch_ok(&server.url, cache.path());
    assert_eq!(fetched.imported.file.tensors, expected_tensors().tensors);
    assert!(
        fetched.cached > fetched.downloaded,
        "nothing came from the cache"
    );

    // Without byte ranges a cut body cannot be resumed: say so, keep nothing.
    let whole_cut = tempfile::tempdir().unwrap();
    let url = serve_whole_cut(body.clone(), 1000);
    let e = fetch(&url, whole_cut.path(), None, quiet())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("ended after 1000 of") && e.contains("does not allow resuming"),
        "{e}"
    );
}

/// A server that promises the whole file and sends `after` bytes of it.
fn serve_whole_cut(body: Vec<u8>, after: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap_or(0) > 2 {
                header.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body[..after]);
        }
    });
    format!("http://{addr}/ckpt.pt")
}

#[test]
fn a_wrong_file_a_missing_file_and_no_server_are_clear_errors() {
    let cache = tempfile::tempdir().unwrap();
    // A web page where the checkpoint should be.
    let page = serve(b"<html>moved</html>".repeat(100), Mode::Ranges);
    let e = fetch(&page.url, cache.path(), None, quiet())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a PyTorch checkpoint"), "{e}");
    // ... and nothing of it stays in the cache.
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);

    // A checkpoint of another network, against the celeba preset: refused on its size before
    // anything else is fetched.
    let small = serve(checkpoint(), Mode::Ranges);
    let e = fetch(
        &small.url,
        cache.path(),
        Some(dit_web::Preset::celeba()),
        quiet(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("not the expected checkpoint") && e.contains("`celeba` preset's weights"),
        "{e}"
    );
    assert!(small.sent.load(Ordering::SeqCst) <= 1);

    let missing = small.url.replace("ckpt.pt", "nothing.pt");
    let e = fetch(&missing, cache.path(), None, quiet())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("HTTP 404"), "{e}");

    let e = fetch("http://127.0.0.1:9/ckpt.pt", cache.path(), None, quiet())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("could not download http://127.0.0.1:9/ckpt.pt"),
        "{e}"
    );
}

#[test]
fn the_command_writes_int8_weights_and_a_card() {
    let server = serve(checkpoint(), Mode::Ranges);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("weights/celeba.safetensors");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    // A card of an earlier file under that name is replaced.
    std::fs::write(
        dir.path().join("weights/celeba.card.json"),
        "{\"steps\": 999}",
    )
    .unwrap();
    // The command checks against the celeba preset; the fixture is a small network, so this
    // run must stop at the size check and write nothing.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["download", "celeba-reference", "--url", &server.url])
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(dir.path().join("cache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(text.contains("`celeba` preset's weights"), "{text}");
    assert!(!out.exists());

    // The same conversion through the library, written as the command writes it.
    let fetched = fetch_ok(&server.url, &dir.path().join("cache"));
    let report = trainer::export::write(fetched.imported.file, Quantization::Int8, &out).unwrap();
    let file = WeightFile::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(file.meta.quantization, Quantization::Int8);
    assert_eq!(report.bytes as u64, std::fs::metadata(&out).unwrap().len());
    let card = trainer::import_torch::reference::card(
        &trainer::import_torch::reference::CELEBA,
        &server.url,
        file.meta.step,
    );
    assert_eq!(card["cpu_start"]["images"], 1);
    assert!(card["source"].as_str().unwrap().contains(&server.url));
    assert!(card["trained"].as_str().unwrap().contains("1,234"));
}
