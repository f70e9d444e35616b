/*
 * cap_spin.c - the head waiter awake when its slot comes (cap_spin.h).
 */
#include "cap_spin.h"
#include "cap_int.h"

#define HOLD_MAX_US 10000000u      /* a longer "hold" is a stale stamp: no measure */

uint32_t cap_spin_now_us(void)
{
	return (uint32_t)(cap_now_ns() / 1000);
}

void cap_spin_granted_locked(struct cap_spin *sp, uint64_t ticket)
{
	uint32_t g = sp->grants;
	__atomic_store_n(&sp->stamp_us[g % CAP_SPIN_RING], cap_spin_now_us(), __ATOMIC_RELAXED);
	__atomic_store_n(&sp->last_ticket, ticket, __ATOMIC_RELAXED);
	__atomic_store_n(&sp->grants, g + 1, __ATOMIC_RELEASE);
}

/* The window's half-width for an average miss of dev µs. */
static uint32_t window(uint32_t dev)
{
	uint32_t w = 2 * dev;
	return w < CAP_SPIN_WIN_MIN ? CAP_SPIN_WIN_MIN : w > CAP_SPIN_WIN_MAX ? CAP_SPIN_WIN_MAX : w;
}

void cap_spin_released_locked(struct cap_spin *sp, uint32_t max)
{
	if (max == 0 || max > CAP_SPIN_RING || sp->grants < max)
		return;
	uint32_t held = cap_spin_now_us() - sp->stamp_us[(sp->grants - max) % CAP_SPIN_RING];
	uint32_t avg = sp->hold_us, dev = sp->dev_us, score = sp->score;
	if (held > HOLD_MAX_US) {        /* the stamp is older than this contention */
		__atomic_store_n(&sp->score, 0, __ATOMIC_RELAXED);
		return;
	}
	if (avg == 0) {
		avg = held;
	} else {
		uint32_t err = held > avg ? held - avg : avg - held;
		if (err <= window(dev))
			score += score < CAP_SPIN_SCORE_MAX;
		else
			score = score > 2 ? score - 2 : 0;
		avg = (uint32_t)(((uint64_t)avg * 7 + held) / 8);
		dev = (uint32_t)(((uint64_t)dev * 7 + (err < HOLD_MAX_US ? err : HOLD_MAX_US)) / 8);
	}
	__atomic_store_n(&sp->hold_us, avg ? avg : 1, __ATOMIC_RELAXED);
	__atomic_store_n(&sp->dev_us, dev, __ATOMIC_RELAXED);
	__atomic_store_n(&sp->score, score, __ATOMIC_RELAXED);
}

int cap_spin_predict(const struct cap_spin *sp, uint32_t max, uint64_t places, uint32_t *at,
                     uint32_t *win)
{
	uint32_t grants = __atomic_load_n(&sp->grants, __ATOMIC_ACQUIRE);
	uint32_t hold = __atomic_load_n(&sp->hold_us, __ATOMIC_RELAXED);
	if (max == 0 || max > CAP_SPIN_RING || grants < max || hold == 0
	    || __atomic_load_n(&sp->score, __ATOMIC_RELAXED) < CAP_SPIN_SCORE_ON
	    || places >= 16 * (uint64_t)max)         /* too far to foretell */
		return 0;
	uint32_t slot = (grants - max + (uint32_t)(places % max)) % CAP_SPIN_RING;
	*at = __atomic_load_n(&sp->stamp_us[slot], __ATOMIC_RELAXED)
	      + (uint32_t)(places / max + 1) * hold;
	uint32_t dev = __atomic_load_n(&sp->dev_us, __ATOMIC_RELAXED);
	if (2 * dev > CAP_SPIN_WIN_MAX)              /* too erratic: the spin would miss */
		return 0;
	*win = window(dev);
	return 1;
}

int cap_spin_is_spinning(struct cap_spin *sp, int idx)
{
	/* Against the waiter's clear-then-look (cap_spin_wait): one of the
	 * two sees the other's store. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(&sp->spinner, __ATOMIC_RELAXED) == (uint32_t)idx + 1;
}

/* Not (or no longer) announced as spinning; then 1 if the entry moved on
 * meanwhile (the caller must look before it sleeps). */
static int unannounce(struct cap_spin *sp, struct seg_waiter *me, uint32_t mine)
{
	uint32_t cur = mine;
	if (__atomic_load_n(&sp->spinner, __ATOMIC_RELAXED) != mine
	    || !__atomic_compare_exchange_n(&sp->spinner, &cur, 0, 0, __ATOMIC_SEQ_CST,
	                                    __ATOMIC_RELAXED))
		return 0;
	/* a releaser that saw us spinning made no FUTEX_WAKE: look again */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(&me->state, __ATOMIC_ACQUIRE) != WAITER_QUEUED;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* Granted while spinning: the releaser still holds the lock for a moment
 * (it lets it go right after its grant); wait for that awake, not on the
 * mutex's futex.  Bounded; a holder that stays is cap_lock's business. */
static void await_lock(struct seg_cap *cap)
{
	uint64_t end = cap_now_ns() + CAP_SPIN_LOCK_US * 1000ull;
	for (unsigned i = 1; __atomic_load_n(&cap->lock.__data.__lock, __ATOMIC_RELAXED) != 0; i++) {
		cpu_relax();
		if ((i & 15) == 0 && cap_now_ns() >= end)
			return;
	}
}

int cap_spin_wait(struct seg_cap *cap, struct seg_waiter *me, uint32_t max, uint32_t seen,
                  uint64_t now_ns, uint64_t until_ns)
{
	struct cap_spin *sp = &cap->spin;
	uint32_t mine = (uint32_t)(me - cap->waiters) + 1;
	/* an entry whose last owner died spinning is announced still */
	if (unannounce(sp, me, mine))
		return 1;
	uint64_t last = __atomic_load_n(&sp->last_ticket, __ATOMIC_RELAXED);
	uint32_t at, win;
	if (me->ticket <= last || !cap_spin_predict(sp, max, me->ticket - last - 1, &at, &win))
		return 0;
	int32_t ahead = (int32_t)(at - (uint32_t)(now_ns / 1000));   /* µs to the predicted turn */
	int32_t early = (int32_t)win + CAP_SPIN_WAKE_US;
	if (ahead > early) {
		/* asleep until the window opens (a grant wakes us earlier) */
		uint64_t wake = now_ns + (uint64_t)(ahead - early) * 1000;
		futex_wait(&me->futex, seen, (wake < until_ns ? wake : until_ns) - now_ns);
		return 1;
	}
	/* Only until the window closes (a spin just ended at its close does
	 * not start again); the head spins, the next ones look again soon
	 * (nobody wakes a waiter that becomes the head). */
	if (ahead + (int32_t)win < CAP_SPIN_WIN_MIN / 2)
		return 0;
	if (me->ticket - last != 1) {
		uint64_t wake = now_ns + (uint64_t)win * 1000 / 2;
		futex_wait(&me->futex, seen, (wake < until_ns ? wake : until_ns) - now_ns);
		return 1;
	}
	uint64_t end = now_ns + (uint64_t)(ahead + (int32_t)win) * 1000;
	if (end > now_ns + CAP_SPIN_MAX_US * 1000ull)
		end = now_ns + CAP_SPIN_MAX_US * 1000ull;
	if (end > until_ns)
		end = until_ns;
	__atomic_store_n(&sp->spinner, mine, __ATOMIC_SEQ_CST);
	int granted = 0;
	uint64_t looked = now_ns;
	for (unsigned i = 1;; i++) {
		if (__atomic_load_n(&me->futex, __ATOMIC_ACQUIRE) != seen
		    || __atomic_load_n(&me->state, __ATOMIC_ACQUIRE) != WAITER_QUEUED) {
			granted = __atomic_load_n(&me->state, __ATOMIC_ACQUIRE) == WAITER_GRANTED;
			break;
		}
		cpu_relax();
		if ((i & 15) == 0) {
			uint64_t t = cap_now_ns();
			if (t >= end)
				break;
			/* Preempted: the CPUs have other work, and a spin takes
			 * one from it.  Stop, and no spins until the score is
			 * earned again. */
			if (t - looked > CAP_SPIN_PREEMPT_US * 1000ull) {
				__atomic_store_n(&sp->score, 0, __ATOMIC_RELAXED);
				break;
			}
			looked = t;
		}
	}
	unannounce(sp, me, mine);
	if (granted)
		await_lock(cap);
	return 1;
}
