//! The machines of a multi-node data-parallel run, joined over TCP: machine 0 listens on the
//! address every machine is given (`--master host:port`), the others connect to it, and a sum
//! across machines is every other machine sending its numbers to machine 0, which adds them in
//! rank order (the same result on every run) and sends the total back.
//!
//! Why its own code: burn-collective 0.21's level across machines (its global orchestrator) stops
//! at the second operation. Its nodes' barrier (`SyncService::sync`) clears a copy of the list
//! of nodes that reached it, not the list itself, so from the second barrier on the list never
//! matches the nodes again and every node waits for ever; and its global broadcast is
//! `unimplemented!`. A star over plain sockets is enough for what training needs (one sum per
//! step), if not as fast as a ring between GPUs.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long a machine waits for the others, to join and at each sum.
const PATIENCE: Duration = Duration::from_secs(600);

/// This machine's connections: machine 0 holds one to each other machine (in rank order), every
/// other machine one to machine 0.
pub struct Mesh {
    rank: u32,
    links: Vec<TcpStream>,
}

impl Mesh {
    /// Joins the run of `nodes` machines as `rank`: machine 0 binds `master` and waits for the
    /// others, the others connect to it (retrying while it starts).
    pub fn join(master: &str, nodes: u32, rank: u32) -> io::Result<Self> {
        let links = match rank {
            0 => {
                let listener = TcpListener::bind(master)?;
                let mut links: Vec<(u32, TcpStream)> = Vec::new();
                while links.len() + 1 < nodes as usize {
                    let (mut stream, _) = listener.accept()?;
                    let mut word = [0u8; 4];
                    stream.read_exact(&mut word)?;
                    links.push((u32::from_le_bytes(word), stream));
                }
                links.sort_by_key(|(r, _)| *r);
                let ranks: Vec<u32> = links.iter().map(|(r, _)| *r).collect();
                if ranks != (1..nodes).collect::<Vec<_>>() {
                    return Err(io::Error::other(format!(
                        "machines joined with ranks {ranks:?}, expected 1..{nodes} once each"
                    )));
                }
                links.into_iter().map(|(_, s)| s).collect()
            }
            _ => {
                let started = Instant::now();
                let mut stream = loop {
                    match TcpStream::connect(master) {
                        Ok(stream) => break stream,
                        Err(e) if started.elapsed() > PATIENCE => {
                            return Err(io::Error::new(e.kind(), format!("{master}: {e}")))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(200)),
                    }
                };
                stream.write_all(&rank.to_le_bytes())?;
                vec![stream]
            }
        };
        for link in &links {
            link.set_nodelay(true)?;
            link.set_read_timeout(Some(PATIENCE))?;
        }
        Ok(Self { rank, links })
    }

    /// Replaces `values` by their sum over every machine (each machine gives as many).
    pub fn sum(&mut self, values: &mut [f32]) -> io::Result<()> {
        if self.rank == 0 {
            let mut theirs = vec![0f32; values.len()];
            for link in &mut self.links {
                read_floats(link, &mut theirs)?;
                values.iter_mut().zip(&theirs).for_each(|(v, t)| *v += t);
            }
            for link in &mut self.links {
                write_floats(link, values)?;
            }
        } else {
            let link = &mut self.links[0];
            write_floats(link, values)?;
            read_floats(link, values)?;
        }
        Ok(())
    }
}

fn write_floats(link: &mut TcpStream, values: &[f32]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(8 + 4 * values.len());
    bytes.extend((values.len() as u64).to_le_bytes());
    values.iter().for_each(|v| bytes.extend(v.to_le_bytes()));
    link.write_all(&bytes)
}

fn read_floats(link: &mut TcpStream, values: &mut [f32]) -> io::Result<()> {
    let mut len = [0u8; 8];
    link.read_exact(&mut len)?;
    if u64::from_le_bytes(len) != values.len() as u64 {
        return Err(io::Error::other(format!(
            "a machine sent {} numbers where {} were expected (is every machine running the same command?)",
            u64::from_le_bytes(len),
            values.len()
        )));
    }
    let mut bytes = vec![0u8; 4 * values.len()];
    link.read_exact(&mut bytes)?;
    for (v, b) in values.iter_mut().zip(bytes.chunks_exact(4)) {
        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_machines_sum_in_rank_order() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let master = format!("127.0.0.1:{port}");
        let handles: Vec<_> = (0..3u32)
            .map(|rank| {
                let master = master.clone();
                std::thread::spawn(move || {
                    let mut mesh = Mesh::join(&master, 3, rank).unwrap();
                    let mut values = vec![rank as f32, 10.0 * rank as f32];
                    mesh.sum(&mut values).unwrap();
                    let mut again = vec![1.0];
                    mesh.sum(&mut again).unwrap();
                    (values, again)
                })
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap(), (vec![3.0, 30.0], vec![3.0]));
        }
    }
}
