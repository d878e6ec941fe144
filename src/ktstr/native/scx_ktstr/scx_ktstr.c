/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_ktstr loader: loads scx_ktstr.bpf.c, sets its knobs from the command
 * line, then polls a control file and applies every changed line.
 *
 * Control file (default /run/scx_ktstr/knobs; the loader creates it empty):
 * one "name=value" per line, '#' starts a comment. When the file's content
 * changes, each line is applied in order; a knob whose value did not change
 * is left alone (so its timers do not restart), a knob not named keeps its
 * value, and "name=off" (or 0) turns it off. Unknown names and bad values are
 * reported on stderr and ignored.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <scx/common.h>
#include "scx_ktstr.bpf.skel.h"

#define CGROUP_ROOT	"/sys/fs/cgroup"
#define DEFAULT_KNOBS	"/run/scx_ktstr/knobs"
#define MAX_LATER	8
#define VALUE_LEN	256

static const char usage[] =
"ktstr's fixture sched_ext scheduler: a global FIFO with knobs that make it misbehave.\n"
"\n"
"Usage: %s [options]\n"
"\n"
"Knobs (all off by default; the same names work in the control file as name=value):\n"
"  --pile[=CPU]               pile=CPU|on|off       run every task on one CPU (default 0)\n"
"  --pile-cgroup=CG[,CPU]     pile_cgroup=CG[,CPU]  run CG's tasks on one CPU (default 0)\n"
"  --idle-waste               idle_waste=on|off     only the first half of the CPUs take work\n"
"  --starve-cgroup=CG,MS      starve_cgroup=CG,MS   do not run CG's tasks for MS ms\n"
"  --unfair-cgroup=CG,F       unfair_cgroup=CG,F    give CG's tasks F times the slice\n"
"  --unfair-odd=F             unfair_odd=F          give tasks with an odd pid F times the slice\n"
"  --wake-delay-us=US         wake_delay_us=US      hold every woken task US us\n"
"  --skip-dispatch=PCT        skip_dispatch=PCT     skip PCT %% of dispatches\n"
"  --stall-after-s=S          stall_after_s=S       stop running user tasks S s from now\n"
"  --error-after-s=S          error_after_s=S       call scx_bpf_error() S s from now\n"
"  CG is a cgroup id or a path (absolute, or under " CGROUP_ROOT ").\n"
"\n"
"Other options:\n"
"  --knobs=FILE               the control file (default " DEFAULT_KNOBS ")\n"
"  --poll-ms=MS               how often the control file is read (default 50)\n"
"  --write-knob-after=S:LINE  append LINE to the control file S s after attaching\n"
"                             (for tests where nothing else can write it)\n"
"  --slice-us=US              the time slice (default: the kernel's, 20 ms)\n"
"  --timeout-ms=MS            the sched_ext watchdog timeout (default: the kernel's, 30 s)\n"
"  --stats-s=S                print the counters every S s (default 1, 0: never)\n"
"  -v, --verbose              print libbpf debug messages\n"
"  -h, --help                 this help\n";

enum knob_id {
	K_PILE, K_PILE_CG, K_IDLE_WASTE, K_STARVE, K_UNFAIR, K_UNFAIR_ODD, K_WAKE_DELAY, K_SKIP, K_STALL,
	K_ERROR, NR_KNOBS,
};

static const char *const knob_names[NR_KNOBS] = {
	[K_PILE] = "pile",
	[K_PILE_CG] = "pile_cgroup",
	[K_IDLE_WASTE] = "idle_waste",
	[K_STARVE] = "starve_cgroup",
	[K_UNFAIR] = "unfair_cgroup",
	[K_UNFAIR_ODD] = "unfair_odd",
	[K_WAKE_DELAY] = "wake_delay_us",
	[K_SKIP] = "skip_dispatch",
	[K_STALL] = "stall_after_s",
	[K_ERROR] = "error_after_s",
};

/* A cgroup knob whose cgroup may not exist yet: resolved on every poll. */
struct cg_target {
	char spec[VALUE_LEN];	/* id or path as given; "" when off */
	unsigned long long amount;	/* ms (starve), factor (unfair) or CPU (pile) */
	int pending;
	int announced;
};

enum cg_knob { CG_STARVE, CG_UNFAIR, CG_PILE, NR_CG_KNOBS };

static const enum knob_id cg_knob_ids[NR_CG_KNOBS] = {
	[CG_STARVE] = K_STARVE,
	[CG_UNFAIR] = K_UNFAIR,
	[CG_PILE] = K_PILE_CG,
};

static struct scx_ktstr *skel;
static char current[NR_KNOBS][VALUE_LEN];
static struct cg_target cg_targets[NR_CG_KNOBS];
static volatile sig_atomic_t exit_req;
static int verbose;

static int libbpf_print_fn(enum libbpf_print_level level, const char *format, va_list args)
{
	if (level == LIBBPF_DEBUG && !verbose)
		return 0;
	return vfprintf(stderr, format, args);
}

static void on_signal(int sig)
{
	exit_req = 1;
}

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int parse_ull(const char *v, unsigned long long max, unsigned long long *out)
{
	char *end;

	if (!*v || *v == '-')
		return -1;
	errno = 0;
	*out = strtoull(v, &end, 10);
	return (errno || *end || *out > max) ? -1 : 0;
}

/* Seconds, fractions allowed, to nanoseconds. */
static int parse_seconds(const char *v, unsigned long long *ns)
{
	char *end;
	double s;

	errno = 0;
	s = strtod(v, &end);
	if (errno || end == v || *end || s < 0 || s > 86400)
		return -1;
	*ns = (unsigned long long)(s * 1e9);
	return 0;
}

/* --- cgroups -------------------------------------------------------- */

static unsigned long long find_ino;
static char found_path[PATH_MAX];

static int match_ino(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_D && st->st_ino == find_ino) {
		snprintf(found_path, sizeof(found_path), "%s", path);
		return 1;
	}
	return 0;
}

static int depth_below_root(const char *path)
{
	const char *rel = path + strlen(CGROUP_ROOT);
	int depth = 0;

	for (; *rel; rel++)
		if (*rel == '/' && rel[1] && rel[1] != '/')
			depth++;
	return depth;
}

/*
 * A cgroup spec to (id, depth below the cgroup2 root). The id of a cgroup2
 * directory is its inode number. Returns 0, or -1 while it does not exist.
 */
static int resolve_cgroup(const char *spec, unsigned long long *id, unsigned int *level)
{
	char path[PATH_MAX], real[PATH_MAX];
	unsigned long long want;
	struct stat st;

	if (!parse_ull(spec, ~0ULL, &want)) {
		find_ino = want;
		found_path[0] = '\0';
		if (nftw(CGROUP_ROOT, match_ino, 16, FTW_PHYS | FTW_MOUNT) != 1)
			return -1;
		snprintf(path, sizeof(path), "%s", found_path);
	} else if (spec[0] == '/') {
		snprintf(path, sizeof(path), "%s", spec);
	} else {
		snprintf(path, sizeof(path), "%s/%s", CGROUP_ROOT, spec);
	}
	if (!realpath(path, real) || stat(real, &st) || !S_ISDIR(st.st_mode))
		return -1;
	if (strncmp(real, CGROUP_ROOT, strlen(CGROUP_ROOT)) ||
	    (real[strlen(CGROUP_ROOT)] != '/' && real[strlen(CGROUP_ROOT)] != '\0'))
		return -1;
	*id = st.st_ino;
	*level = depth_below_root(real);
	return 0;
}

/* Write a resolved cgroup knob into the BPF program; 0 once it is in effect. */
static int arm_cgroup(enum cg_knob which)
{
	struct cg_target *t = &cg_targets[which];
	unsigned long long id;
	unsigned int level;

	if (!t->pending)
		return 0;
	if (resolve_cgroup(t->spec, &id, &level)) {
		if (!t->announced)
			printf("scx_ktstr: knob %s: cgroup %s does not exist yet, waiting for it\n",
			       knob_names[cg_knob_ids[which]], t->spec);
		t->announced = 1;
		return -1;
	}
	switch (which) {
	case CG_STARVE:
		skel->bss->starve_until_ns = now_ns() + t->amount * 1000000ULL;
		skel->bss->starve_level = level;
		__atomic_store_n(&skel->bss->starve_cgid, id, __ATOMIC_RELEASE);
		printf("scx_ktstr: knob starve_cgroup: cgroup %s (id %llu, level %u) gets no CPU "
		       "for %llu ms from now\n", t->spec, id, level, t->amount);
		break;
	case CG_UNFAIR:
		skel->bss->unfair_factor = t->amount;
		skel->bss->unfair_level = level;
		__atomic_store_n(&skel->bss->unfair_cgid, id, __ATOMIC_RELEASE);
		printf("scx_ktstr: knob unfair_cgroup: cgroup %s (id %llu, level %u) gets %llux "
		       "the slice\n", t->spec, id, level, t->amount);
		break;
	case CG_PILE:
		skel->bss->pile_cg_cpu = t->amount;
		skel->bss->pile_cg_level = level;
		__atomic_store_n(&skel->bss->pile_cgid, id, __ATOMIC_RELEASE);
		printf("scx_ktstr: knob pile_cgroup: cgroup %s (id %llu, level %u) runs on "
		       "CPU %llu\n", t->spec, id, level, t->amount);
		break;
	default:
		break;
	}
	t->pending = 0;
	return 0;
}

/* --- knobs ---------------------------------------------------------- */

static int bad(const char *origin, const char *name, const char *value, const char *why)
{
	fprintf(stderr, "scx_ktstr: %s: %s=%s rejected: %s\n", origin, name, value, why);
	return -1;
}

/* Set by main() while the command-line knobs are only checked, before attaching. */
static int checking;

/*
 * Apply one knob: parse and check the value, then (unless only checking)
 * write it into the BPF program and print a line. 0, or -1 once reported.
 */
static int apply_knob(const char *name, const char *value, const char *origin)
{
	unsigned long long n = 0, ns = 0;
	int k, off = !strcmp(value, "off") || !*value, cg_on = 0;
	enum cg_knob which = NR_CG_KNOBS;	/* set for a cgroup knob */
	struct cg_target *t;
	char spec[VALUE_LEN], *comma = NULL;

	for (k = 0; k < NR_KNOBS; k++)
		if (!strcmp(name, knob_names[k]))
			break;
	if (k == NR_KNOBS) {
		fprintf(stderr, "scx_ktstr: %s: unknown knob '%s' (known: pile, pile_cgroup, "
			"idle_waste, starve_cgroup, unfair_cgroup, unfair_odd, wake_delay_us, skip_dispatch, "
			"stall_after_s, error_after_s)\n", origin, name);
		return -1;
	}
	if (strlen(value) >= VALUE_LEN)
		return bad(origin, name, "...", "value too long");
	if (!checking && !strcmp(current[k], value))
		return 0;

	/* parse and check */
	switch (k) {
	case K_PILE:
		if (off)
			break;
		if (strcmp(value, "on") && parse_ull(value, INT_MAX, &n))
			return bad(origin, name, value, "want a CPU number, on or off");
		if ((int)n >= libbpf_num_possible_cpus())
			return bad(origin, name, value, "no such CPU");
		break;
	case K_PILE_CG:
		if (off || !strcmp(value, "0"))
			break;
		snprintf(spec, sizeof(spec), "%s", value);
		comma = strrchr(spec, ',');
		if (comma == spec)
			return bad(origin, name, value, "want CGROUP or CGROUP,CPU");
		if (comma) {
			*comma = '\0';
			if (parse_ull(comma + 1, INT_MAX, &n))
				return bad(origin, name, value, "want CGROUP or CGROUP,CPU");
			if ((int)n >= libbpf_num_possible_cpus())
				return bad(origin, name, value, "no such CPU");
		}
		cg_on = 1;
		break;
	case K_IDLE_WASTE:
		if (!strcmp(value, "on") || !strcmp(value, "1"))
			n = 1;
		else if (!off && strcmp(value, "0"))
			return bad(origin, name, value, "want on or off");
		break;
	case K_STARVE:
	case K_UNFAIR:
		if (off || !strcmp(value, "0"))
			break;
		snprintf(spec, sizeof(spec), "%s", value);
		comma = strrchr(spec, ',');
		if (!comma || comma == spec)
			return bad(origin, name, value,
				   k == K_STARVE ? "want CGROUP,MS" : "want CGROUP,FACTOR");
		*comma = '\0';
		if (parse_ull(comma + 1, k == K_STARVE ? 3600000 : 1000, &n) || !n)
			return bad(origin, name, value,
				   k == K_STARVE ? "MS must be 1..3600000" : "FACTOR must be 1..1000");
		cg_on = 1;
		break;
	case K_UNFAIR_ODD:
		if (!off && (parse_ull(value, 1000, &n) || !n))
			return bad(origin, name, value, "want a FACTOR of 1..1000, or off");
		break;
	case K_WAKE_DELAY:
		if (!off && parse_ull(value, 10000000, &n))
			return bad(origin, name, value, "want microseconds, at most 10 s");
		break;
	case K_SKIP:
		if (!off && parse_ull(value, 100, &n))
			return bad(origin, name, value, "want a percentage 0..100");
		break;
	case K_STALL:
	case K_ERROR:
		if (!off && strcmp(value, "0") && (parse_seconds(value, &ns) || !ns))
			return bad(origin, name, value, "want seconds (fractions allowed), or off");
		break;
	}
	if (checking)
		return 0;

	/* commit */
	switch (k) {
	case K_PILE:
		skel->bss->pile_cpu = n;
		skel->bss->pile_on = !off;
		break;
	case K_IDLE_WASTE:
		skel->bss->idle_waste = n;
		break;
	case K_STARVE:
	case K_UNFAIR:
	case K_PILE_CG:
		which = k == K_STARVE ? CG_STARVE : k == K_UNFAIR ? CG_UNFAIR : CG_PILE;
		t = &cg_targets[which];
		/* off until the (new) cgroup is resolved */
		if (which == CG_STARVE)
			skel->bss->starve_cgid = 0;
		else if (which == CG_UNFAIR)
			skel->bss->unfair_cgid = 0;
		else
			skel->bss->pile_cgid = 0;
		memset(t, 0, sizeof(*t));
		if (cg_on) {
			snprintf(t->spec, sizeof(t->spec), "%s", spec);
			t->amount = n;
			t->pending = 1;
		}
		break;
	case K_UNFAIR_ODD:
		skel->bss->unfair_odd = n;
		break;
	case K_WAKE_DELAY:
		skel->bss->wake_delay_ns = n * 1000;
		break;
	case K_SKIP:
		skel->bss->skip_pct = n;
		break;
	case K_STALL:
		skel->bss->stall_at_ns = ns ? now_ns() + ns : 0;
		break;
	case K_ERROR:
		skel->bss->error_after_ms = ns / 1000000;
		skel->bss->error_at_ns = ns ? now_ns() + ns : 0;
		break;
	}
	printf("scx_ktstr: knob %s: %s -> %s (%s)\n", name, current[k][0] ? current[k] : "off",
	       *value ? value : "off", origin);
	snprintf(current[k], sizeof(current[k]), "%s", value);
	if (which != NR_CG_KNOBS)
		arm_cgroup(which);
	return 0;
}

/* "name=value" with surrounding blanks; comments and blank lines are skipped. */
static int apply_line(char *line, const char *origin)
{
	char *eq, *name, *value, *end;

	line[strcspn(line, "#\r\n")] = '\0';
	for (name = line; *name == ' ' || *name == '\t'; name++)
		;
	if (!*name)
		return 0;
	eq = strchr(name, '=');
	if (!eq) {
		fprintf(stderr, "scx_ktstr: %s: '%s' is not name=value\n", origin, name);
		return -1;
	}
	*eq = '\0';
	value = eq + 1;
	for (end = eq - 1; end >= name && (*end == ' ' || *end == '\t'); end--)
		*end = '\0';
	while (*value == ' ' || *value == '\t')
		value++;
	for (end = value + strlen(value) - 1; end >= value && (*end == ' ' || *end == '\t'); end--)
		*end = '\0';
	return apply_knob(name, value, origin);
}

/* --- the control file ----------------------------------------------- */

static char *last_content;

static int mkdir_parents(const char *file)
{
	char dir[PATH_MAX], *p;

	snprintf(dir, sizeof(dir), "%s", file);
	p = strrchr(dir, '/');
	if (!p || p == dir)
		return 0;
	*p = '\0';
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return (mkdir(dir, 0755) && errno != EEXIST) ? -1 : 0;
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f)
		return NULL;
	do {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap + 1);
			if (!buf)
				break;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0 && len < (1 << 20));
	fclose(f);
	if (buf)
		buf[len] = '\0';
	return buf;
}

static void poll_file(const char *path)
{
	char *content = read_all(path), *line, *save, origin[PATH_MAX + 16];
	int lineno = 0;

	if (!content)
		return;
	if (last_content && !strcmp(content, last_content)) {
		free(content);
		return;
	}
	free(last_content);
	last_content = strdup(content);
	for (line = strtok_r(content, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		snprintf(origin, sizeof(origin), "%s:%d", path, ++lineno);
		apply_line(line, origin);
	}
	free(content);
}

struct later {
	double at_s;
	char line[VALUE_LEN];
	int done;
};

static void write_later(const char *path, struct later *l)
{
	FILE *f = fopen(path, "a");

	if (!f || fprintf(f, "%s\n", l->line) < 0 || fclose(f)) {
		fprintf(stderr, "scx_ktstr: writing '%s' to %s failed: %s\n", l->line, path,
			strerror(errno));
	} else {
		printf("scx_ktstr: wrote '%s' to %s (--write-knob-after)\n", l->line, path);
	}
	l->done = 1;
}

static void print_stats(void)
{
	printf("scx_ktstr: direct=%llu shared=%llu last=%llu piled=%llu piled_cg=%llu "
	       "parked=%llu delayed=%llu skipped=%llu\n",
	       (unsigned long long)skel->bss->nr_direct, (unsigned long long)skel->bss->nr_shared,
	       (unsigned long long)skel->bss->nr_last, (unsigned long long)skel->bss->nr_piled,
	       (unsigned long long)skel->bss->nr_piled_cg, (unsigned long long)skel->bss->nr_parked,
	       (unsigned long long)skel->bss->nr_delayed, (unsigned long long)skel->bss->nr_skipped);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pile", optional_argument, NULL, 'P' },
		{ "pile-cgroup", required_argument, NULL, 'G' },
		{ "idle-waste", no_argument, NULL, 'I' },
		{ "starve-cgroup", required_argument, NULL, 'S' },
		{ "unfair-cgroup", required_argument, NULL, 'U' },
		{ "unfair-odd", required_argument, NULL, 'O' },
		{ "wake-delay-us", required_argument, NULL, 'W' },
		{ "skip-dispatch", required_argument, NULL, 'K' },
		{ "stall-after-s", required_argument, NULL, 'T' },
		{ "error-after-s", required_argument, NULL, 'E' },
		{ "knobs", required_argument, NULL, 'f' },
		{ "poll-ms", required_argument, NULL, 'p' },
		{ "write-knob-after", required_argument, NULL, 'w' },
		{ "slice-us", required_argument, NULL, 's' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "stats-s", required_argument, NULL, 'r' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	/* knobs from the command line, applied once attached: [knob] = value */
	const char *initial[NR_KNOBS] = { 0 };
	struct later later[MAX_LATER];
	const char *knobs_path = DEFAULT_KNOBS;
	unsigned long long n, poll_ms = 50, slice_us = 0, timeout_ms = 0, stats_s = 1;
	unsigned long long started, last_stats;
	int nr_later = 0, opt, k, failed = 0;
	struct bpf_link *link;
	struct sigaction sa = { .sa_handler = on_signal };
	FILE *f;

	setvbuf(stdout, NULL, _IOLBF, 0);
	libbpf_set_print(libbpf_print_fn);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'P': initial[K_PILE] = optarg ? optarg : "on"; break;
		case 'G': initial[K_PILE_CG] = optarg; break;
		case 'I': initial[K_IDLE_WASTE] = "on"; break;
		case 'S': initial[K_STARVE] = optarg; break;
		case 'U': initial[K_UNFAIR] = optarg; break;
		case 'O': initial[K_UNFAIR_ODD] = optarg; break;
		case 'W': initial[K_WAKE_DELAY] = optarg; break;
		case 'K': initial[K_SKIP] = optarg; break;
		case 'T': initial[K_STALL] = optarg; break;
		case 'E': initial[K_ERROR] = optarg; break;
		case 'f': knobs_path = optarg; break;
		case 'p':
			if (parse_ull(optarg, 60000, &poll_ms) || !poll_ms) {
				fprintf(stderr, "scx_ktstr: --poll-ms wants 1..60000\n");
				return 1;
			}
			break;
		case 'w': {
			char *colon = strchr(optarg, ':'), *end;

			if (nr_later == MAX_LATER || !colon) {
				fprintf(stderr, "scx_ktstr: --write-knob-after wants S:NAME=VALUE "
					"(at most %d)\n", MAX_LATER);
				return 1;
			}
			later[nr_later].at_s = strtod(optarg, &end);
			if (end != colon || later[nr_later].at_s < 0) {
				fprintf(stderr, "scx_ktstr: --write-knob-after: bad time in '%s'\n",
					optarg);
				return 1;
			}
			snprintf(later[nr_later].line, VALUE_LEN, "%s", colon + 1);
			later[nr_later++].done = 0;
			break;
		}
		case 's':
			if (parse_ull(optarg, 10000000, &slice_us) || !slice_us) {
				fprintf(stderr, "scx_ktstr: --slice-us wants 1..10000000\n");
				return 1;
			}
			break;
		case 't':
			if (parse_ull(optarg, 30000, &timeout_ms) || !timeout_ms) {
				fprintf(stderr, "scx_ktstr: --timeout-ms wants 1..30000\n");
				return 1;
			}
			break;
		case 'r':
			if (parse_ull(optarg, 3600, &stats_s)) {
				fprintf(stderr, "scx_ktstr: --stats-s wants 0..3600\n");
				return 1;
			}
			break;
		case 'v': verbose = 1; break;
		case 'h':
			fprintf(stdout, usage, basename(argv[0]));
			return 0;
		default:
			fprintf(stderr, usage, basename(argv[0]));
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "scx_ktstr: unexpected argument '%s'\n", argv[optind]);
		return 1;
	}

	skel = SCX_OPS_OPEN(ktstr_ops, scx_ktstr);
	skel->rodata->slice_ns = slice_us * 1000;
	if (timeout_ms)
		skel->struct_ops.ktstr_ops->timeout_ms = timeout_ms;
	SCX_OPS_LOAD(skel, ktstr_ops, scx_ktstr, uei);

	/* Check the command-line knobs before attaching; apply them once attached. */
	checking = 1;
	for (k = 0; k < NR_KNOBS; k++)
		if (initial[k] && apply_knob(knob_names[k], initial[k], "command line"))
			failed = 1;
	checking = 0;
	if (failed) {
		scx_ktstr__destroy(skel);
		return 1;
	}

	if (mkdir_parents(knobs_path) || !(f = fopen(knobs_path, "w")) || fclose(f)) {
		fprintf(stderr, "scx_ktstr: cannot create the control file %s: %s\n", knobs_path,
			strerror(errno));
		scx_ktstr__destroy(skel);
		return 1;
	}
	last_content = strdup("");

	link = SCX_OPS_ATTACH(skel, ktstr_ops, scx_ktstr);
	started = last_stats = now_ns();
	printf("scx_ktstr: attached; control file %s, polled every %llu ms\n", knobs_path,
	       poll_ms);
	for (k = 0; k < NR_KNOBS; k++)
		if (initial[k])
			apply_knob(knob_names[k], initial[k], "command line");

	while (!exit_req && !UEI_EXITED(skel, uei)) {
		struct timespec ts = { poll_ms / 1000, (poll_ms % 1000) * 1000000 };
		unsigned long long now = now_ns();

		for (k = 0; k < nr_later; k++)
			if (!later[k].done && now - started >= later[k].at_s * 1e9)
				write_later(knobs_path, &later[k]);
		poll_file(knobs_path);
		for (k = 0; k < NR_CG_KNOBS; k++)
			arm_cgroup(k);
		if (stats_s && now - last_stats >= stats_s * 1000000000ULL) {
			print_stats();
			last_stats = now;
		}
		nanosleep(&ts, NULL);
	}

	print_stats();
	bpf_link__destroy(link);
	n = UEI_REPORT(skel, uei);
	scx_ktstr__destroy(skel);
	free(last_content);
	(void)n;
	return 0;
}
