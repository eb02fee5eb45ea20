//! Peak resident memory of broker processes the bench was pointed at (`--broker-pid`).
//!
//! Linux keeps a process's peak RSS as `VmHWM` in `/proc/PID/status`; writing `5` to
//! `/proc/PID/clear_refs` resets it to the current RSS, so one broker process can report the
//! peak of each scenario run against it.

use anyhow::{bail, Context};

/// `PID` or `NAME=PID`.
pub fn parse_pid(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = match s.split_once('=') {
        Some((n, p)) if !n.trim().is_empty() => (n.trim().to_string(), p.trim()),
        Some(_) => return Err(format!("expected PID or NAME=PID, got {s:?}")),
        None => (format!("pid-{}", s.trim()), s.trim()),
    };
    let pid = pid
        .parse::<u32>()
        .map_err(|_| format!("expected PID or NAME=PID with a numeric PID, got {s:?}"))?;
    Ok((name, pid))
}

pub struct Watch {
    pids: Vec<(String, u32)>,
}

impl Watch {
    pub fn new(pids: Vec<(String, u32)>) -> Watch {
        Watch { pids }
    }

    /// Starts a new peak at each process's current RSS.
    pub fn reset(&self) -> anyhow::Result<()> {
        for (name, pid) in &self.pids {
            std::fs::write(format!("/proc/{pid}/clear_refs"), "5").with_context(|| {
                format!("cannot reset the peak RSS of {name} (pid {pid}): is it running and ours?")
            })?;
        }
        Ok(())
    }

    /// Each process's peak RSS in bytes since the last reset.
    pub fn peaks(&self) -> anyhow::Result<Vec<(String, u64)>> {
        self.pids
            .iter()
            .map(|(name, pid)| {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| {
                        format!("cannot read the status of {name} (pid {pid}): did it exit?")
                    })?;
                Ok((
                    name.clone(),
                    vm_hwm(&status)
                        .with_context(|| format!("no VmHWM line in /proc/{pid}/status"))?,
                ))
            })
            .collect()
    }
}

/// `VmHWM:   123456 kB` in bytes.
fn vm_hwm(status: &str) -> anyhow::Result<u64> {
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmHWM:") {
            let kb = rest.trim().trim_end_matches("kB").trim();
            return Ok(kb.parse::<u64>().context("VmHWM is not a number")? * 1024);
        }
    }
    bail!("VmHWM missing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_parse_with_and_without_names() {
        assert_eq!(parse_pid("42").unwrap(), ("pid-42".to_string(), 42));
        assert_eq!(parse_pid("b1=7").unwrap(), ("b1".to_string(), 7));
        assert!(parse_pid("b1=x").is_err());
        assert!(parse_pid("=7").is_err());
    }

    #[test]
    fn peak_of_this_process_is_read() {
        let w = Watch::new(vec![("me".into(), std::process::id())]);
        w.reset().unwrap();
        let peaks = w.peaks().unwrap();
        assert!(peaks[0].1 > 0);
        assert_eq!(vm_hwm("Name: x\nVmHWM:\t  2048 kB\n").unwrap(), 2 << 20);
    }
}
