//! Crash faults of a local testnet (issue 17, item 4): `mako testnet --crash 2@15s-25s` kills validator 2's
//! processes with SIGKILL 15 s after the client starts and starts them again at 25 s, on the same store;
//! `--down 1` never starts the last validator, as the Narwhal benchmark's `faults` parameter. The schedule is
//! a pure value: the testnet asks it which actions are due at each tick.

use std::str::FromStr;
use std::time::Duration;

/// One validator crashed at `at` (after the client starts), and restarted at `restart` if given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    pub validator: usize,
    pub at: Duration,
    pub restart: Option<Duration>,
}

impl FromStr for Crash {
    type Err = String;

    /// `V@T` (down for good) or `V@T-R`, times as `15s`, `1m30s`, `500ms`.
    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || format!("{text:?}: a crash is VALIDATOR@TIME or VALIDATOR@TIME-RESTART, e.g. 2@15s-25s");
        let (validator, times) = text.split_once('@').ok_or_else(usage)?;
        let validator = validator.trim().parse().map_err(|_| usage())?;
        let time = |t: &str| humantime::parse_duration(t.trim()).map_err(|e| format!("{}: {e}", usage()));
        let (at, restart) = match times.split_once('-') {
            Some((at, restart)) => (time(at)?, Some(time(restart)?)),
            None => (time(times)?, None),
        };
        if restart.is_some_and(|r| r <= at) {
            return Err(format!("{text:?}: the restart must come after the crash"));
        }
        Ok(Crash { validator, at, restart })
    }
}

/// What the testnet does to a validator's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// SIGKILL every process of the validator (its primary and its workers).
    Kill(usize),
    /// Start them again, on the store they left.
    Restart(usize),
}

impl FaultAction {
    pub fn validator(self) -> usize {
        match self {
            FaultAction::Kill(v) | FaultAction::Restart(v) => v,
        }
    }
}

/// The crashes of a run, as actions in time order.
#[derive(Clone, Debug, Default)]
pub struct FaultSchedule {
    events: Vec<(Duration, FaultAction)>,
    next: usize,
}

impl FaultSchedule {
    /// Checks the crashes against the committee: validators that exist and are started (not among the `down`
    /// last ones), and no validator crashed again before its restart.
    pub fn new(crashes: &[Crash], nodes: usize, down: usize) -> Result<Self, String> {
        if down >= nodes {
            return Err(format!("--down {down} leaves no validator of {nodes} up"));
        }
        let started = nodes - down;
        let mut events = Vec::new();
        for crash in crashes {
            if crash.validator >= started {
                return Err(format!(
                    "validator {} cannot crash: the started validators are 0..{started} ({nodes} minus --down {down})",
                    crash.validator
                ));
            }
            events.push((crash.at, FaultAction::Kill(crash.validator)));
            if let Some(restart) = crash.restart {
                events.push((restart, FaultAction::Restart(crash.validator)));
            }
        }
        // At equal times a restart comes before a kill, so "2@5s-10s,2@10s" is down, up, down.
        events.sort_by_key(|(at, action)| (*at, matches!(action, FaultAction::Kill(_))));
        let mut down_now = vec![false; nodes];
        for (at, action) in &events {
            let v = action.validator();
            match action {
                FaultAction::Kill(_) if down_now[v] => {
                    return Err(format!("validator {v} crashes at {at:?} while it is still down"));
                }
                FaultAction::Restart(_) if !down_now[v] => {
                    return Err(format!("validator {v} restarts at {at:?} but is not down"));
                }
                _ => down_now[v] = matches!(action, FaultAction::Kill(_)),
            }
        }
        Ok(Self { events, next: 0 })
    }

    /// The actions due by `elapsed` that were not returned before, in order.
    pub fn due(&mut self, elapsed: Duration) -> Vec<FaultAction> {
        let due: Vec<FaultAction> =
            self.events[self.next..].iter().take_while(|(at, _)| *at <= elapsed).map(|(_, a)| *a).collect();
        self.next += due.len();
        due
    }

    /// Whether `validator` is crashed at some point of the run.
    pub fn touches(&self, validator: usize) -> bool {
        self.events.iter().any(|(_, action)| action.validator() == validator)
    }

    /// The most validators down at once (crashed, plus the `down` never started).
    pub fn most_down_at_once(&self, down: usize) -> usize {
        let (mut now, mut most) = (down, down);
        for (_, action) in &self.events {
            match action {
                FaultAction::Kill(_) => now += 1,
                FaultAction::Restart(_) => now -= 1,
            }
            most = most.max(now);
        }
        most
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn crashes_parse_with_and_without_a_restart() {
        assert_eq!("2@15s-25s".parse(), Ok(Crash { validator: 2, at: s(15), restart: Some(s(25)) }));
        assert_eq!("0@1m".parse(), Ok(Crash { validator: 0, at: s(60), restart: None }));
        assert_eq!(
            "1@500ms-2s".parse(),
            Ok(Crash { validator: 1, at: Duration::from_millis(500), restart: Some(s(2)) })
        );
        for bad in ["2", "x@1s", "2@", "2@soon", "2@10s-5s", "2@10s-10s"] {
            assert!(bad.parse::<Crash>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_schedule_hands_out_each_action_once_in_time_order() {
        let crashes: Vec<Crash> = ["2@15s-25s", "0@40s-43s"].iter().map(|c| c.parse().unwrap()).collect();
        let mut schedule = FaultSchedule::new(&crashes, 4, 0).unwrap();
        assert_eq!(schedule.due(s(10)), vec![]);
        assert_eq!(schedule.due(s(30)), vec![FaultAction::Kill(2), FaultAction::Restart(2)]);
        assert_eq!(schedule.due(s(30)), vec![]);
        assert_eq!(schedule.due(s(100)), vec![FaultAction::Kill(0), FaultAction::Restart(0)]);
        assert!(schedule.touches(2) && schedule.touches(0) && !schedule.touches(1));
        assert_eq!(schedule.most_down_at_once(0), 1);
        assert_eq!(schedule.most_down_at_once(1), 2);
    }

    #[test]
    fn impossible_schedules_are_refused() {
        let crash = |text: &str| -> Crash { text.parse().unwrap() };
        assert!(FaultSchedule::new(&[crash("4@1s")], 4, 0).is_err(), "no validator 4");
        assert!(FaultSchedule::new(&[crash("3@1s")], 4, 1).is_err(), "validator 3 never starts");
        assert!(FaultSchedule::new(&[], 4, 4).is_err(), "nothing left up");
        assert!(FaultSchedule::new(&[crash("1@1s-9s"), crash("1@5s")], 4, 0).is_err(), "crashed while down");
        let back_to_back = FaultSchedule::new(&[crash("1@1s-5s"), crash("1@5s-9s")], 4, 0).unwrap();
        assert_eq!(back_to_back.most_down_at_once(0), 1, "restarted, then crashed again at the same instant");
    }
}
