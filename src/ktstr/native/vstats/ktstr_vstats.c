// SPDX-License-Identifier: GPL-2.0
/*
 * ktstr_vstats: an LD_PRELOAD library that records what the BPF verifier
 * says about every program a scheduler's loader loads.
 *
 * libbpf loads programs through libc's syscall(__NR_bpf, BPF_PROG_LOAD, ...).
 * This library wraps syscall(): for each BPF_PROG_LOAD it adds the verifier's
 * statistics level (BPF_LOG_STATS) to the request, giving the kernel a buffer
 * when the loader gave none, and afterwards writes one file per load into
 * $KTSTR_VSTATS_DIR: the program's name and type, the result, the program id
 * and verified instruction count (from BPF_OBJ_GET_INFO_BY_FD), then the
 * verifier's log. The loader's own request is restored before returning, so
 * it sees exactly what it would have seen, and the programs verified are the
 * very ones the loader attaches (its own .rodata values included).
 *
 * Any other call goes straight to libc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OWN_LOG_SIZE (1u << 20)
#ifndef BPF_LOG_STATS
#define BPF_LOG_STATS 4
#endif

typedef long (*syscall_fn)(long, ...);

static syscall_fn real_syscall;
static unsigned int seq;
static char own_log[OWN_LOG_SIZE];

static syscall_fn libc_syscall(void)
{
	if (!real_syscall)
		real_syscall = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
	return real_syscall;
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

/*
 * The program's BTF (its full function name is there: the kernel keeps only 15
 * characters of a name) is written once per BTF object as btf-<id>; the load file
 * names the object and the function's type id, the first func_info record's.
 */
static void save_btf(const union bpf_attr *attr, const char *dir, __u32 *btf_id, __u32 *type_id)
{
	struct bpf_btf_info info;
	union bpf_attr req;
	char path[4096];
	void *data;
	int fd;

	if (!attr->func_info || !attr->func_info_cnt || attr->func_info_rec_size < 8)
		return;
	memset(&info, 0, sizeof(info));
	memset(&req, 0, sizeof(req));
	req.info.bpf_fd = attr->prog_btf_fd;
	req.info.info_len = sizeof(info);
	req.info.info = (unsigned long)&info;
	if (libc_syscall()(SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &req, sizeof(req)) < 0 || !info.btf_size)
		return;
	*type_id = ((const __u32 *)(unsigned long)attr->func_info)[1];
	*btf_id = info.id;
	snprintf(path, sizeof(path), "%s/btf-%u", dir, info.id);
	if (access(path, F_OK) == 0)
		return;
	data = malloc(info.btf_size);
	if (!data)
		return;
	info.btf = (unsigned long)data;
	req.info.info_len = sizeof(info);
	fd = -1;
	if (libc_syscall()(SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &req, sizeof(req)) == 0)
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd >= 0) {
		write_all(fd, data, info.btf_size);
		close(fd);
	}
	free(data);
}

static void record(const union bpf_attr *attr, long ret, int err, const char *log, size_t log_cap)
{
	__u32 btf_id = 0, type_id = 0;
	const char *dir = getenv("KTSTR_VSTATS_DIR");
	struct bpf_prog_info info;
	union bpf_attr req;
	char path[4096], head[512], name[BPF_OBJ_NAME_LEN + 1];
	size_t log_len = 0;
	int fd, n;

	if (!dir)
		return;
	memset(&info, 0, sizeof(info));
	if (ret >= 0) {
		memset(&req, 0, sizeof(req));
		req.info.bpf_fd = (unsigned int)ret;
		req.info.info_len = sizeof(info);
		req.info.info = (unsigned long)&info;
		libc_syscall()(SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &req, sizeof(req));
	}
	if (ret >= 0)
		save_btf(attr, dir, &btf_id, &type_id);
	memcpy(name, attr->prog_name, BPF_OBJ_NAME_LEN);
	name[BPF_OBJ_NAME_LEN] = '\0';
	if (log)
		log_len = strnlen(log, log_cap);
	snprintf(path, sizeof(path), "%s/load-%06u", dir, seq++);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	n = snprintf(head, sizeof(head),
		     "name %s\ntype %u\nfd %ld\nerrno %d\nid %u\nverified_insns %u\nlog_level %u\n"
		     "btf_id %u\nfunc_type_id %u\n\n",
		     name, attr->prog_type, ret, ret < 0 ? err : 0, info.id, info.verified_insns,
		     attr->log_level, btf_id, type_id);
	if (n > 0)
		write_all(fd, head, (size_t)n < sizeof(head) ? (size_t)n : sizeof(head) - 1);
	if (log_len)
		write_all(fd, log, log_len);
	close(fd);
}

static long prog_load(union bpf_attr *attr, unsigned long size)
{
	__u32 level = attr->log_level, log_size = attr->log_size;
	__u64 log_buf = attr->log_buf;
	int own = !log_buf || !log_size;
	const char *log;
	size_t cap;
	long ret;
	int err;

	if (own) {
		own_log[0] = '\0';
		attr->log_buf = (unsigned long)own_log;
		attr->log_size = OWN_LOG_SIZE;
		attr->log_level = BPF_LOG_STATS;
	} else {
		attr->log_level = level | BPF_LOG_STATS;
	}
	ret = libc_syscall()(SYS_bpf, BPF_PROG_LOAD, attr, size);
	err = errno;
	/*
	 * A log cut short must not fail a load that the loader's own request would pass:
	 * the statistics lines may be what filled a buffer.
	 */
	if (ret < 0 && err == ENOSPC && !(level & BPF_LOG_STATS)) {
		attr->log_level = level;
		attr->log_buf = log_buf;
		attr->log_size = log_size;
		ret = libc_syscall()(SYS_bpf, BPF_PROG_LOAD, attr, size);
		err = errno;
	}
	log = own ? own_log : (const char *)(unsigned long)log_buf;
	cap = own ? OWN_LOG_SIZE : log_size;
	attr->log_level = level;
	record(attr, ret, err, log, cap);
	attr->log_buf = log_buf;
	attr->log_size = log_size;
	errno = err;
	return ret;
}

long syscall(long nr, ...)
{
	long a[6];
	va_list ap;
	int i;

	va_start(ap, nr);
	for (i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == SYS_bpf && a[0] == BPF_PROG_LOAD && a[1] &&
	    (unsigned long)a[2] >= offsetof(union bpf_attr, prog_name) + BPF_OBJ_NAME_LEN)
		return prog_load((union bpf_attr *)a[1], (unsigned long)a[2]);
	return libc_syscall()(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
