/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_ktstr: ktstr's fixture scheduler.
 *
 * With no knob set it is a plain global FIFO: a waking task that finds an
 * idle CPU goes straight to that CPU; every other task joins one shared
 * queue, an idle CPU is kicked when one is free, and every CPU serves
 * itself from the head of the queue.
 *
 * The knobs make it misbehave on purpose, so that ktstr's checks can be
 * shown to catch each kind of fault. The loader (scx_ktstr.c) writes them
 * into this program's .bss at any time; zero always means "off". Times are
 * absolute bpf_ktime_get_ns() values (CLOCK_MONOTONIC), computed by the
 * loader when a knob takes effect.
 *
 * Queues:
 *   SHARED_DSQ  the FIFO every CPU consumes from
 *   DELAY_DSQ   woken tasks held back by wake_delay, ordered by release time
 *               (kept in p->scx.dsq_vtime)
 *   PARK_DSQ    tasks of the starved cgroup, released when the window ends
 *   LIMBO_DSQ   user tasks after stall_after_s: never consumed
 *
 * A task's cgroup is its scheduling cgroup, scx_bpf_task_cgroup(): the
 * nearest cgroup with the cpu controller enabled. A cgroup knob names a
 * cgroup by id (its cgroup2 inode number) and depth; a task matches when
 * its cgroup is that one or one of its descendants. scx_bpf_task_cgroup()
 * only answers for the task an op was called for, so a task parked or
 * delayed by ops.enqueue() carries what pile_cgroup decided for it (in its
 * task_ctx) to ops.dispatch(), which releases it.
 *
 * SCX_OPS_ENQ_LAST is set so that a task alone on its CPU still passes
 * through ops.enqueue() when its slice ends; otherwise the kernel would
 * keep running it there and pile/starve could not move or stop it.
 */
#include <scx/common.bpf.h>

char _license[] SEC("license") = "GPL";

#define SHARED_DSQ	0
#define DELAY_DSQ	1
#define PARK_DSQ	2
#define LIMBO_DSQ	3
#define TIMER_NS	(2 * 1000 * 1000ULL)

const volatile u64 slice_ns;	/* 0: the kernel's default slice */

/* Knobs, written by the loader while the scheduler runs. */
volatile u32 pile_on;
volatile u32 pile_cpu;
volatile u64 pile_cgid;
volatile u32 pile_cg_level;
volatile u32 pile_cg_cpu;
volatile u32 idle_waste;
volatile u64 starve_cgid;
volatile u32 starve_level;
volatile u64 starve_until_ns;
volatile u64 unfair_cgid;
volatile u32 unfair_level;
volatile u32 unfair_factor;
volatile u32 unfair_odd;	/* slice factor for tasks with an odd pid */
volatile u64 wake_delay_ns;
volatile u32 skip_pct;
volatile u64 stall_at_ns;
volatile u64 error_at_ns;
volatile u64 error_after_ms;	/* only for the error message */

/* Counters the loader prints. */
u64 nr_direct, nr_shared, nr_piled, nr_piled_cg, nr_parked, nr_delayed, nr_skipped, nr_last;

UEI_DEFINE(uei);

struct ktstr_timer {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct ktstr_timer);
} ktstr_timers SEC(".maps");

/* Only for tasks of the pile_cgroup that were parked or delayed. */
struct task_ctx {
	u64 pile_cgid;	/* the pile_cgroup it was found in when queued; 0: none */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctxs SEC(".maps");

static u64 base_slice(void)
{
	return slice_ns ?: SCX_SLICE_DFL;
}

/*
 * After stall_after_s, user tasks are no longer run. Kernel threads still
 * are, so that the kernel's watchdog (a kworker) can name a stuck task
 * rather than finding itself unable to run.
 */
static bool stalled(struct task_struct *p, u64 now)
{
	return stall_at_ns && now >= stall_at_ns && !(p->flags & PF_KTHREAD);
}

static void maybe_fail(u64 now)
{
	if (error_at_ns && now >= error_at_ns)
		scx_bpf_error("error_after_s knob: failing on purpose %llu ms after it was set",
			      error_after_ms);
}

/* The first half of the CPUs (at least one) are the only ones idle_waste lets work. */
static u32 nr_workers(void)
{
	return (scx_bpf_nr_cpu_ids() + 1) / 2;
}

static bool in_cgroup(struct task_struct *p, u64 cgid, u32 level)
{
	struct cgroup *cgrp, *anc;
	bool hit = false;

	if (!cgid)
		return false;
	cgrp = scx_bpf_task_cgroup(p);
	if (!cgrp)
		return false;
	if (cgrp->level >= (int)level) {
		anc = bpf_cgroup_ancestor(cgrp, level);
		if (anc) {
			hit = anc->kn->id == cgid;
			bpf_cgroup_release(anc);
		}
	}
	bpf_cgroup_release(cgrp);
	return hit;
}

static bool may_run_on(struct task_struct *p, u32 cpu)
{
	return cpu < scx_bpf_nr_cpu_ids() && bpf_cpumask_test_cpu(cpu, p->cpus_ptr);
}

/*
 * The CPU a task is piled on, or -1; *by_cgroup tells whether pile_cgroup
 * (which names the CPU of its own tasks) or pile (every other task) chose
 * it. Only from an op called for @p.
 */
static s32 pile_target(struct task_struct *p, bool *by_cgroup)
{
	u64 cgid = pile_cgid;
	u32 cpu = pile_cg_cpu;

	*by_cgroup = false;
	if (cgid && may_run_on(p, cpu) && in_cgroup(p, cgid, pile_cg_level)) {
		*by_cgroup = true;
		return cpu;
	}
	cpu = pile_cpu;
	if (pile_on && may_run_on(p, cpu))
		return cpu;
	return -1;
}

/* Before @p is parked or delayed: note whether pile_cgroup holds it, for release_target(). */
static void note_pile_cgroup(struct task_struct *p)
{
	u64 cgid = pile_cgid;
	struct task_ctx *tctx;

	if (cgid && in_cgroup(p, cgid, pile_cg_level)) {
		tctx = bpf_task_storage_get(&task_ctxs, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (tctx)
			tctx->pile_cgid = cgid;
		return;
	}
	tctx = bpf_task_storage_get(&task_ctxs, p, 0, 0);
	if (tctx)
		tctx->pile_cgid = 0;
}

static bool may_use_workers(struct task_struct *p)
{
	u32 cpu, n = nr_workers();

	bpf_for(cpu, 0, n) {
		if (bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
			return true;
	}
	return false;
}

/* Any knob that needs every decision to go through ops.enqueue(). */
static bool knobs_on(void)
{
	return pile_on || idle_waste || starve_cgid || unfair_cgid || unfair_odd ||
	       wake_delay_ns || skip_pct || stall_at_ns;
}

s32 BPF_STRUCT_OPS(ktstr_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool idle = false, by_cgroup;
	s32 cpu;

	/*
	 * A task pile_cgroup does not hold may still go straight to an idle
	 * CPU below (pile_cgid is not in knobs_on()): it is scheduled as if
	 * no knob were set.
	 */
	cpu = pile_target(p, &by_cgroup);
	if (cpu >= 0)
		return cpu;
	if (idle_waste) {
		/* no search for an idle CPU: wake it on a working CPU, idle or not */
		cpu = prev_cpu % nr_workers();
		if (prev_cpu >= 0 && (u32)prev_cpu < nr_workers())
			return prev_cpu;
		if (cpu >= 0 && bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
			return cpu;
		return prev_cpu;
	}
	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &idle);
	if (idle && !knobs_on()) {
		__sync_fetch_and_add(&nr_direct, 1);
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, base_slice(), 0);
	}
	return cpu;
}

static void kick_an_idle_cpu_for(struct task_struct *p)
{
	s32 cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);

	if (cpu >= 0)
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
}

void BPF_STRUCT_OPS(ktstr_enqueue, struct task_struct *p, u64 enq_flags)
{
	u64 now = bpf_ktime_get_ns();
	u64 slice = base_slice();
	bool by_cgroup;
	s32 cpu;

	if (unfair_cgid && unfair_factor > 1 && in_cgroup(p, unfair_cgid, unfair_level))
		slice *= unfair_factor;
	/* equal tasks of one cgroup, forked one after another, alternate odd and even pids */
	if (unfair_odd > 1 && (p->pid & 1))
		slice *= unfair_odd;

	if (starve_cgid && now < starve_until_ns && in_cgroup(p, starve_cgid, starve_level)) {
		__sync_fetch_and_add(&nr_parked, 1);
		note_pile_cgroup(p);
		scx_bpf_dsq_insert(p, PARK_DSQ, slice, enq_flags);
		return;
	}

	if (stalled(p, now)) {
		/* queued where nobody will look */
		scx_bpf_dsq_insert(p, LIMBO_DSQ, slice, enq_flags);
		return;
	}

	if (wake_delay_ns && (enq_flags & SCX_ENQ_WAKEUP)) {
		__sync_fetch_and_add(&nr_delayed, 1);
		note_pile_cgroup(p);
		scx_bpf_dsq_insert_vtime(p, DELAY_DSQ, slice, now + wake_delay_ns, enq_flags);
		return;
	}

	cpu = pile_target(p, &by_cgroup);
	if (cpu >= 0) {
		if (by_cgroup)
			__sync_fetch_and_add(&nr_piled_cg, 1);
		else
			__sync_fetch_and_add(&nr_piled, 1);
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL_ON | cpu, slice, enq_flags);
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		return;
	}

	cpu = scx_bpf_task_cpu(p);
	if (idle_waste) {
		if (!may_use_workers(p)) {
			/* bound to idle CPUs only: serve it where it is, or it would stall */
			scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice, enq_flags);
			return;
		}
		if ((enq_flags & SCX_ENQ_LAST) && cpu < nr_workers()) {
			scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice, enq_flags);
			return;
		}
		__sync_fetch_and_add(&nr_shared, 1);
		scx_bpf_dsq_insert(p, SHARED_DSQ, slice, enq_flags);
		return;
	}

	if (enq_flags & SCX_ENQ_LAST) {
		/* nothing else wants this CPU: keep running here */
		__sync_fetch_and_add(&nr_last, 1);
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice, enq_flags);
		return;
	}

	__sync_fetch_and_add(&nr_shared, 1);
	scx_bpf_dsq_insert(p, SHARED_DSQ, slice, enq_flags);
	kick_an_idle_cpu_for(p);
}

/*
 * Tasks leaving DELAY_DSQ or PARK_DSQ go where ops.enqueue() would have put
 * them. Called from ops.dispatch() for tasks it was not called for, so the
 * cgroup comes from what note_pile_cgroup() found when the task was queued.
 */
static u64 release_target(struct task_struct *p, u64 now)
{
	struct task_ctx *tctx;
	u64 cgid = pile_cgid;
	u32 cpu = pile_cg_cpu;

	if (stalled(p, now))
		return LIMBO_DSQ;
	tctx = bpf_task_storage_get(&task_ctxs, p, 0, 0);
	if (cgid && tctx && tctx->pile_cgid == cgid && may_run_on(p, cpu))
		return SCX_DSQ_LOCAL_ON | cpu;
	cpu = pile_cpu;
	if (pile_on && may_run_on(p, cpu))
		return SCX_DSQ_LOCAL_ON | cpu;
	return SHARED_DSQ;
}

void BPF_STRUCT_OPS(ktstr_dispatch, s32 cpu, struct task_struct *prev)
{
	u64 now = bpf_ktime_get_ns();
	struct task_struct *p;

	maybe_fail(now);
	if (skip_pct && bpf_get_prandom_u32() % 100 < skip_pct) {
		__sync_fetch_and_add(&nr_skipped, 1);
		return;
	}
	if (idle_waste && cpu >= nr_workers())
		return;

	if (scx_bpf_dsq_nr_queued(PARK_DSQ) > 0 && (!starve_cgid || now >= starve_until_ns)) {
		bpf_for_each(scx_dsq, p, PARK_DSQ, 0)
			scx_bpf_dsq_move(BPF_FOR_EACH_ITER, p, release_target(p, now), 0);
	}
	if (scx_bpf_dsq_nr_queued(DELAY_DSQ) > 0) {
		bpf_for_each(scx_dsq, p, DELAY_DSQ, 0) {
			if (p->scx.dsq_vtime > now)
				break;
			scx_bpf_dsq_move(BPF_FOR_EACH_ITER, p, release_target(p, now), 0);
		}
	}
	scx_bpf_dsq_move_to_local(SHARED_DSQ, 0);
}

void BPF_STRUCT_OPS(ktstr_tick, struct task_struct *p)
{
	maybe_fail(bpf_ktime_get_ns());
}

/*
 * Every TIMER_NS: fail if error_after_s is due, and wake idle CPUs when
 * work waits that nobody would otherwise come for (a released delay or
 * park, a dispatch that was skipped).
 */
static int ktstr_timerfn(void *map, int *key, struct bpf_timer *timer)
{
	u64 now = bpf_ktime_get_ns();
	const struct cpumask *idle;
	bool waiting;
	u32 cpu;

	maybe_fail(now);
	waiting = scx_bpf_dsq_nr_queued(SHARED_DSQ) > 0 ||
		  scx_bpf_dsq_nr_queued(DELAY_DSQ) > 0 ||
		  (scx_bpf_dsq_nr_queued(PARK_DSQ) > 0 &&
		   (!starve_cgid || now >= starve_until_ns));
	if (waiting && !idle_waste) {
		idle = scx_bpf_get_idle_cpumask();
		bpf_for(cpu, 0, scx_bpf_nr_cpu_ids()) {
			if (bpf_cpumask_test_cpu(cpu, idle))
				scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		}
		scx_bpf_put_idle_cpumask(idle);
	}
	bpf_timer_start(timer, TIMER_NS, 0);
	return 0;
}

s32 BPF_STRUCT_OPS_SLEEPABLE(ktstr_init)
{
	struct bpf_timer *timer;
	u32 key = 0;
	s32 ret;

	ret = scx_bpf_create_dsq(SHARED_DSQ, -1);
	if (!ret)
		ret = scx_bpf_create_dsq(DELAY_DSQ, -1);
	if (!ret)
		ret = scx_bpf_create_dsq(PARK_DSQ, -1);
	if (!ret)
		ret = scx_bpf_create_dsq(LIMBO_DSQ, -1);
	if (ret) {
		scx_bpf_error("creating the queues failed (%d)", ret);
		return ret;
	}

	timer = bpf_map_lookup_elem(&ktstr_timers, &key);
	if (!timer) {
		scx_bpf_error("no timer slot");
		return -ENOENT;
	}
	bpf_timer_init(timer, &ktstr_timers, CLOCK_MONOTONIC);
	bpf_timer_set_callback(timer, ktstr_timerfn);
	ret = bpf_timer_start(timer, TIMER_NS, 0);
	if (ret)
		scx_bpf_error("starting the timer failed (%d)", ret);
	return ret;
}

void BPF_STRUCT_OPS(ktstr_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(ktstr_ops,
	       .select_cpu	= (void *)ktstr_select_cpu,
	       .enqueue		= (void *)ktstr_enqueue,
	       .dispatch	= (void *)ktstr_dispatch,
	       .tick		= (void *)ktstr_tick,
	       .init		= (void *)ktstr_init,
	       .exit		= (void *)ktstr_exit,
	       .flags		= SCX_OPS_ENQ_LAST,
	       .name		= "ktstr");
