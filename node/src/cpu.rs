//! CPU time of a process, from `/proc/<pid>/stat`: what `mako testnet` and `mako bench` divide by executed
//! transactions to report µs of CPU per transaction.

/// User plus system CPU seconds that process `pid` has used so far; none if it has exited or `/proc` is not
/// there (not Linux).
pub fn seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_ticks(&stat)?;
    Some(ticks as f64 / ticks_per_second())
}

/// CPU seconds of the threads of process `pid` whose name starts with `prefix` (fjall's own threads are
/// `fjall:…`), those still running; none if the process is gone.
pub fn threads_seconds(pid: u32, prefix: &str) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let ticks: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter(|stat| stat.split_once('(').is_some_and(|(_, rest)| rest.starts_with(prefix)))
        .filter_map(|stat| parse_ticks(&stat))
        .sum();
    Some(ticks as f64 / ticks_per_second())
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces or parentheses, so fields are counted after the last `)`.
fn parse_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th and stime (15) the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        _ => 100.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_read_after_the_command_name() {
        let stat = "4242 (mako (v) 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 36 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_ticks(stat), Some(286));
        assert_eq!(parse_ticks("4242 (mako) S 1"), None);
    }

    #[test]
    fn this_process_is_found_and_a_missing_one_is_not() {
        assert!(seconds(std::process::id()).is_some_and(|s| s >= 0.0));
        assert_eq!(seconds(u32::MAX), None);
        let named = std::thread::Builder::new().name("cpu-test-spin".into());
        let spinner = named
            .spawn(|| {
                let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
                while std::time::Instant::now() < deadline {}
                std::thread::sleep(std::time::Duration::from_millis(200));
            })
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(350));
        let spun = threads_seconds(std::process::id(), "cpu-test-spin").unwrap();
        spinner.join().unwrap();
        assert!(spun >= 0.1, "a named thread's CPU is found: {spun}");
        assert_eq!(threads_seconds(std::process::id(), "no-such-thread"), Some(0.0));
    }
}
