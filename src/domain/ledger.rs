//! The ledger's rules as a state machine over one user's account, with no I/O: what a hold, a
//! settlement, a credit, a charge, an expiry or a clawback does to the balance, the held total
//! and the grant buckets, and which entry records it. The store locks and loads an [`Account`],
//! applies operations in order, and saves what changed; a single write and a batch of hundreds
//! go through the same rules (docs/decisions.md, "The ledger's rules are one pure state machine").
//!
//! Amounts are micro-credits. The invariants every operation keeps (and `tollgate ledger verify`
//! recomputes from the rows): balance = Σ entry amounts; held = Σ entry held = Σ open holds;
//! Σ bucket remaining = max(balance, 0); a write that takes credits never leaves
//! balance − held below −overdraft.

/// What an entry records. Stored as its [`EntryKind::as_str`] text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Credits added in a new bucket, from a [`GrantSource`].
    Grant,
    Refund,
    /// An operator's or a refund's correction (either sign).
    Adjustment,
    /// Usage known up front, charged at once.
    Debit,
    /// Credits reserved for work whose cost is known afterwards.
    Hold,
    /// A hold closed at what the work cost.
    Settle,
    /// A hold closed at nothing.
    Release,
    /// What was left of a bucket past its expiry.
    Expire,
}

impl EntryKind {
    pub const ALL: [EntryKind; 8] = [
        EntryKind::Grant,
        EntryKind::Refund,
        EntryKind::Adjustment,
        EntryKind::Debit,
        EntryKind::Hold,
        EntryKind::Settle,
        EntryKind::Release,
        EntryKind::Expire,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Grant => "grant",
            EntryKind::Refund => "refund",
            EntryKind::Adjustment => "adjustment",
            EntryKind::Debit => "debit",
            EntryKind::Hold => "hold",
            EntryKind::Settle => "settle",
            EntryKind::Release => "release",
            EntryKind::Expire => "expire",
        }
    }

    pub fn parse(text: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// How a hold stands. Stored and serialised as its [`HoldState::as_str`] text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldState {
    Open,
    Settled,
    Released,
    /// Closed by the expiry job after its process died: charged its recorded usage, or nothing.
    Expired,
}

impl HoldState {
    pub const ALL: [HoldState; 4] = [
        HoldState::Open,
        HoldState::Settled,
        HoldState::Released,
        HoldState::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Open => "open",
            HoldState::Settled => "settled",
            HoldState::Released => "released",
            HoldState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<HoldState> {
        HoldState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The state a hold closed by its owner ends in: settled when something is charged.
    pub fn closed_at(charged: i64) -> HoldState {
        if charged > 0 {
            HoldState::Settled
        } else {
            HoldState::Released
        }
    }
}

/// A grant's bucket: what is left of it, and when that expires (`None`: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub id: i64,
    pub remaining: i64,
    pub expires_at: Option<i64>,
}

/// A change to the account, to be appended as an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Change to the balance.
    pub amount: i64,
    /// Change to the held total.
    pub held: i64,
    pub balance_after: i64,
    /// The bucket an expiry or a clawback took from.
    pub grant_id: Option<i64>,
}

/// Why an operation was refused; the account is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `available` (balance − held) does not cover `needed` within the overdraft.
    Insufficient { available: i64, needed: i64 },
    /// The balance would pass `i64::MAX`.
    Overflow,
    /// Charging `charged` on a hold of `amount` (negative, or above the hold).
    ChargeOutOfRange { charged: i64, amount: i64 },
    /// The hold is not open any more.
    NotOpen(HoldState),
}

/// A hold as the account sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub amount: i64,
    pub state: HoldState,
}

/// One user's account, locked: balance, held total and the buckets that still have credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    balance: i64,
    held: i64,
    /// Buckets with credits left, soonest-expiring first, never-expiring last, then by id.
    buckets: Vec<Bucket>,
    /// `remaining` of each bucket as loaded, to tell which changed.
    loaded: Vec<(i64, i64)>,
}

impl Account {
    /// The account as stored: its balance, held total and buckets with credits left (any order).
    pub fn load(balance: i64, held: i64, mut buckets: Vec<Bucket>) -> Account {
        buckets.retain(|b| b.remaining > 0);
        buckets.sort_by_key(|b| (b.expires_at.is_none(), b.expires_at, b.id));
        let loaded = buckets.iter().map(|b| (b.id, b.remaining)).collect();
        Account {
            balance,
            held,
            buckets,
            loaded,
        }
    }

    pub fn balance(&self) -> i64 {
        self.balance
    }

    pub fn held(&self) -> i64 {
        self.held
    }

    /// What new work may take: the balance less what holds reserve.
    pub fn available(&self) -> i64 {
        self.balance - self.held
    }

    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Buckets whose remaining changed since [`Account::load`] or [`Account::add_bucket`], with the new
    /// remaining: what the store writes back.
    pub fn changed_buckets(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let before = |id: i64| self.loaded.iter().find(|l| l.0 == id).map(|l| l.1);
        let mut out: Vec<(i64, i64)> = self
            .buckets
            .iter()
            .filter(|b| before(b.id) != Some(b.remaining))
            .map(|b| (b.id, b.remaining))
            .collect();
        // Emptied buckets leave the list; they changed to 0.
        for &(id, _) in &self.loaded {
            if !self.buckets.iter().any(|b| b.id == id) {
                out.push((id, 0));
            }
        }
        out.into_iter()
    }

    /// The one overdraft rule: may `amount` more be taken, leaving balance − held ≥ −overdraft?
    fn covers(&self, amount: i64, overdraft: i64) -> Result<(), Refusal> {
        if self.available() - amount < -overdraft {
            Err(Refusal::Insufficient {
                available: self.available(),
                needed: amount,
            })
        } else {
            Ok(())
        }
    }

    /// Reserves `amount` (> 0) for a hold.
    pub fn reserve(&mut self, amount: i64, overdraft: i64) -> Result<Entry, Refusal> {
        debug_assert!(amount > 0);
        self.covers(amount, overdraft)?;
        self.held += amount;
        Ok(self.entry(EntryKind::Hold, 0, amount, None))
    }

    /// Closes an open hold at `charged` (0 ≤ charged ≤ its amount), ending in `ends`: the
    /// charge is taken from the buckets and the rest released. A hold ends released only at 0.
    pub fn close(&mut self, hold: Hold, charged: i64, ends: HoldState) -> Result<Entry, Refusal> {
        if hold.state != HoldState::Open {
            return Err(Refusal::NotOpen(hold.state));
        }
        let out_of_range = charged < 0 || charged > hold.amount;
        if out_of_range || ends == HoldState::Open || (ends == HoldState::Released && charged > 0) {
            return Err(Refusal::ChargeOutOfRange {
                charged,
                amount: hold.amount,
            });
        }
        self.held -= hold.amount;
        self.balance -= charged;
        self.consume(charged);
        let kind = if charged > 0 {
            EntryKind::Settle
        } else {
            EntryKind::Release
        };
        Ok(self.entry(kind, -charged, -hold.amount, None))
    }

    /// Adds `amount` (> 0). A negative balance (an overdraft) is paid first; the new bucket
    /// holds the rest. Returns the entry and the new bucket's remaining; the store inserts the
    /// bucket and hands its id to [`Account::add_bucket`].
    pub fn credit(&mut self, kind: EntryKind, amount: i64) -> Result<(Entry, i64), Refusal> {
        debug_assert!(amount > 0);
        let balance = self.balance.checked_add(amount).ok_or(Refusal::Overflow)?;
        self.balance = balance;
        let remaining = amount.min(balance.max(0));
        Ok((self.entry(kind, amount, 0, None), remaining))
    }

    /// Records the bucket a credit made, as the store inserted it (so it is not saved again
    /// unless a later operation changes it).
    pub fn add_bucket(&mut self, bucket: Bucket) {
        if bucket.remaining > 0 {
            let at = self.buckets.partition_point(|b| order(b) <= order(&bucket));
            self.buckets.insert(at, bucket);
            self.loaded.push((bucket.id, bucket.remaining));
        }
    }

    /// Takes `amount` (> 0) at once: a debit or a negative adjustment.
    pub fn charge(
        &mut self,
        kind: EntryKind,
        amount: i64,
        overdraft: i64,
    ) -> Result<Entry, Refusal> {
        debug_assert!(amount > 0);
        self.covers(amount, overdraft)?;
        self.balance -= amount;
        self.consume(amount);
        Ok(self.entry(kind, -amount, 0, None))
    }

    /// Removes what is left of buckets past their expiry at `now`, except the part open holds
    /// still need: a hold reserved before the expiry is settled from it, the rest expires later.
    pub fn expire(&mut self, now: i64) -> Vec<Entry> {
        let mut entries = Vec::new();
        while self.has_due(now) {
            let first = self.buckets[0];
            let take = first.remaining.min(self.available().max(0));
            if take == 0 {
                break;
            }
            self.take_from(0, take);
            self.balance -= take;
            entries.push(self.entry(EntryKind::Expire, -take, 0, Some(first.id)));
        }
        entries
    }

    /// Whether a bucket is past its expiry at `now` (something [`Account::expire`] may take).
    pub fn has_due(&self, now: i64) -> bool {
        self.buckets
            .first()
            .is_some_and(|b| b.expires_at.is_some_and(|at| at <= now))
    }

    /// Takes back up to `owed` from bucket `grant_id` (a refund of its purchase), bounded by
    /// what is left of it and by what holds do not reserve. `None` when nothing can be taken.
    pub fn claw_back(&mut self, grant_id: i64, owed: i64) -> Option<Entry> {
        let at = self.buckets.iter().position(|b| b.id == grant_id)?;
        let take = owed
            .min(self.buckets[at].remaining)
            .min(self.available().max(0));
        if take <= 0 {
            return None;
        }
        self.take_from(at, take);
        self.balance -= take;
        Some(self.entry(EntryKind::Adjustment, -take, 0, Some(grant_id)))
    }

    /// Takes `amount` from the buckets, soonest-expiring first. What the buckets cannot cover is
    /// overdraft: owed, and paid back by the next credit.
    fn consume(&mut self, mut amount: i64) {
        while amount > 0 && !self.buckets.is_empty() {
            let take = self.buckets[0].remaining.min(amount);
            self.take_from(0, take);
            amount -= take;
        }
    }

    fn take_from(&mut self, at: usize, take: i64) {
        self.buckets[at].remaining -= take;
        if self.buckets[at].remaining == 0 {
            self.buckets.remove(at);
        }
    }

    fn entry(&self, kind: EntryKind, amount: i64, held: i64, grant_id: Option<i64>) -> Entry {
        Entry {
            kind,
            amount,
            held,
            balance_after: self.balance,
            grant_id,
        }
    }
}

fn order(b: &Bucket) -> (bool, Option<i64>, i64) {
    (b.expires_at.is_none(), b.expires_at, b.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(id: i64, remaining: i64, expires_at: Option<i64>) -> Bucket {
        Bucket {
            id,
            remaining,
            expires_at,
        }
    }

    fn open(amount: i64) -> Hold {
        Hold {
            amount,
            state: HoldState::Open,
        }
    }

    #[test]
    fn a_charge_takes_the_soonest_expiring_bucket_first_and_never_expiring_last() {
        let mut a = Account::load(
            30,
            0,
            vec![
                bucket(1, 10, None),
                bucket(2, 10, Some(50)),
                bucket(3, 10, Some(20)),
            ],
        );
        a.charge(EntryKind::Debit, 15, 0).unwrap();
        let left: Vec<(i64, i64)> = a.buckets().iter().map(|b| (b.id, b.remaining)).collect();
        assert_eq!(left, vec![(2, 5), (1, 10)]);
        let mut changed: Vec<(i64, i64)> = a.changed_buckets().collect();
        changed.sort();
        assert_eq!(changed, vec![(2, 5), (3, 0)]);
    }

    #[test]
    fn a_reserve_past_the_overdraft_is_refused_and_changes_nothing() {
        let mut a = Account::load(10, 4, vec![bucket(1, 10, None)]);
        let before = a.clone();
        assert_eq!(
            a.reserve(8, 1),
            Err(Refusal::Insufficient {
                available: 6,
                needed: 8
            })
        );
        assert_eq!(a, before);
        assert_eq!(a.reserve(7, 1).unwrap().held, 7);
        assert_eq!(a.available(), -1);
    }

    #[test]
    fn a_credit_pays_the_overdraft_first() {
        let mut a = Account::load(-4, 0, vec![]);
        let (entry, remaining) = a.credit(EntryKind::Grant, 10).unwrap();
        assert_eq!((entry.amount, entry.balance_after, remaining), (10, 6, 6));
        assert_eq!(
            Account::load(i64::MAX - 1, 0, vec![]).credit(EntryKind::Grant, 2),
            Err(Refusal::Overflow)
        );
    }

    #[test]
    fn expiry_leaves_what_open_holds_still_need() {
        let mut a = Account::load(10, 0, vec![bucket(1, 10, Some(100))]);
        a.reserve(6, 0).unwrap();
        let entries = a.expire(100);
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].amount, entries[0].grant_id), (-4, Some(1)));
        let settle = a.close(open(6), 5, HoldState::Settled).unwrap();
        assert_eq!((settle.amount, settle.held), (-5, -6));
        // The hold's unused part expires once it is released.
        assert_eq!(a.expire(100).iter().map(|e| e.amount).sum::<i64>(), -1);
        assert_eq!((a.balance(), a.held(), a.buckets().len()), (0, 0, 0));
    }

    #[test]
    fn a_hold_closes_once_within_its_amount() {
        let mut a = Account::load(10, 5, vec![bucket(1, 10, None)]);
        assert_eq!(
            a.close(open(5), 6, HoldState::Settled),
            Err(Refusal::ChargeOutOfRange {
                charged: 6,
                amount: 5
            })
        );
        let settled = Hold {
            amount: 5,
            state: HoldState::Settled,
        };
        assert_eq!(
            a.close(settled, 1, HoldState::Settled),
            Err(Refusal::NotOpen(HoldState::Settled))
        );
        assert_eq!(
            a.close(open(5), 1, HoldState::Released),
            Err(Refusal::ChargeOutOfRange {
                charged: 1,
                amount: 5
            })
        );
        let entry = a.close(open(5), 0, HoldState::Expired).unwrap();
        assert_eq!(entry.kind, EntryKind::Release);
    }

    #[test]
    fn a_clawback_takes_only_what_is_left_and_unreserved() {
        let mut a = Account::load(10, 7, vec![bucket(1, 4, None), bucket(2, 6, None)]);
        let e = a.claw_back(2, 5).unwrap();
        assert_eq!((e.amount, e.grant_id), (-3, Some(2)));
        assert_eq!(a.claw_back(2, 5), None);
        assert_eq!(a.claw_back(9, 5), None);
    }

    #[test]
    fn kinds_and_states_read_back_from_their_text() {
        for k in EntryKind::ALL {
            assert_eq!(EntryKind::parse(k.as_str()), Some(k));
        }
        for s in HoldState::ALL {
            assert_eq!(HoldState::parse(s.as_str()), Some(s));
        }
        assert_eq!(EntryKind::parse("gift"), None);
    }

    /// Random operations against the invariants, on a replayed record of every entry. Seeded:
    /// a failure prints the seed that reproduces it.
    #[test]
    fn random_operations_keep_every_invariant() {
        for seed in 0..2_000u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut a = Account::load(0, 0, vec![]);
            let mut holds: Vec<i64> = Vec::new();
            let (mut sum_amount, mut sum_held) = (0i64, 0i64);
            let mut next_id = 1;
            let mut now = 0;
            for _ in 0..60 {
                let overdraft = rng.i64(0..=5);
                let entries: Vec<Entry> = match rng.u8(0..8) {
                    0 => {
                        let (e, remaining) = a.credit(EntryKind::Grant, rng.i64(1..=50)).unwrap();
                        let expires_at = rng.bool().then(|| now + rng.i64(0..=30));
                        a.add_bucket(bucket(next_id, remaining, expires_at));
                        next_id += 1;
                        vec![e]
                    }
                    1 => {
                        let before = a.clone();
                        match a.charge(EntryKind::Debit, rng.i64(1..=40), overdraft) {
                            Ok(e) => vec![e],
                            Err(Refusal::Insufficient { .. }) => {
                                assert_eq!(a, before, "seed {seed}: a refusal changed the account");
                                vec![]
                            }
                            Err(r) => panic!("seed {seed}: {r:?}"),
                        }
                    }
                    2 | 3 => {
                        let amount = rng.i64(1..=30);
                        match a.reserve(amount, overdraft) {
                            Ok(e) => {
                                holds.push(amount);
                                vec![e]
                            }
                            Err(_) => vec![],
                        }
                    }
                    4 | 5 if !holds.is_empty() => {
                        let amount = holds.swap_remove(rng.usize(..holds.len()));
                        let charged = rng.i64(0..=amount);
                        let ends = if rng.bool() {
                            HoldState::Expired
                        } else {
                            HoldState::closed_at(charged)
                        };
                        let e = a.close(open(amount), charged, ends).unwrap();
                        let mut out = vec![e];
                        out.extend(a.expire(now));
                        out
                    }
                    6 => {
                        now += rng.i64(0..=10);
                        a.expire(now)
                    }
                    _ => match a.buckets().first().map(|b| b.id) {
                        Some(id) => a.claw_back(id, rng.i64(1..=20)).into_iter().collect(),
                        None => vec![],
                    },
                };
                for e in entries {
                    sum_amount += e.amount;
                    sum_held += e.held;
                    assert_eq!(e.balance_after, sum_amount, "seed {seed}: balance_after");
                }
                let in_buckets: i64 = a.buckets().iter().map(|b| b.remaining).sum();
                assert_eq!(a.balance(), sum_amount, "seed {seed}: balance = Σ amounts");
                assert_eq!(a.held(), sum_held, "seed {seed}: held = Σ held");
                assert_eq!(
                    a.held(),
                    holds.iter().sum::<i64>(),
                    "seed {seed}: held = Σ open holds"
                );
                assert_eq!(
                    in_buckets,
                    a.balance().max(0),
                    "seed {seed}: Σ buckets = max(balance, 0)"
                );
                assert!(
                    a.buckets().iter().all(|b| b.remaining > 0),
                    "seed {seed}: empty bucket kept"
                );
            }
        }
    }
}
