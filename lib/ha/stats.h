/*
 * Per-process statistics files (lib/ha/stats.c): what a process using the
 * module counts, for the metrics listener (`p11proxy health --listen`,
 * GET /metrics), which runs in another process. A public room header: the
 * CLI includes it, never virt/virt.h. The module's side (the writer, run by
 * the probe thread) is declared in ha/ha.h.
 *
 * The file: "<state_dir>/stats/<PID>.stats", replaced atomically (a temp
 * file ".<PID>.tmp" in the same directory, renamed over it; no fsync: the
 * counts need not survive a crash) at most once a second, and only when a
 * count changed. Mode 0600 in a 0700 directory, as the rest of the state.
 * Removed at C_Finalize; a process that ended without one leaves it behind,
 * and readers ignore and remove the files of processes that are gone.
 *
 *   p11proxy-stats 1                              header: magic, version
 *   pid PID start TICKS                           the writer; TICKS: its start
 *                                                 time (/proc/PID/stat field 22)
 *   backend NAME calls N server_errors N client_errors N refused N
 *   member SLOT NAME state STATE down N failovers N hung N sessions N
 *          calls N server_errors N client_errors N refused N   (one line)
 *   end                                           the last line
 *
 * One space between fields; names with every byte outside 0x21..0x7e, and
 * '%', written %XX. SLOT is the virtual slot's label ("#ID" without one),
 * NAME the member's name, STATE up | recovering | down (as the process sees
 * the member). backend: calls made to the vendor library by this process and
 * their failures by class (p11p_backend: refused answers are also server
 * errors). member: times marked down, sessions moved off it to another
 * member (failovers), calls on it running past call_timeout now (hung), proxy
 * sessions it serves now, and the calls made to it with their failures, as
 * for its backend. Names and counts only: never a secret.
 */
#ifndef P11P_HA_STATS_H
#define P11P_HA_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config/config.h"

#define P11P_STATS_VERSION     1
#define P11P_STATS_INTERVAL_MS 1000UL       /* a process writes its file at most this often */
#define P11P_STATS_MAX_BYTES   (256 * 1024) /* a file */
#define P11P_STATS_LINE_MAX    1024         /* one line of it, newline included */
#define P11P_STATS_MAX_MEMBERS (P11P_MAX_SLOTS * P11P_MAX_MEMBERS)

enum p11p_stats_state {
	P11P_STATS_UP = 0, /* the values of enum p11p_health */
	P11P_STATS_RECOVERING = 1,
	P11P_STATS_DOWN = 2,
	P11P_STATS_STATES
};

struct p11p_stats_backend {
	char name[P11P_NAME_MAX + 1];
	unsigned long long calls, server_errors, client_errors, refused;
};

struct p11p_stats_member {
	char slot[P11P_LABEL_MAX + 1];
	char name[P11P_NAME_MAX + 1];
	enum p11p_stats_state state;
	unsigned long long down, failovers, hung, sessions;
	unsigned long long calls, server_errors, client_errors, refused;
};

/* One process's file, parsed. */
struct p11p_stats {
	long pid;
	unsigned long long start;
	size_t n_backends, n_members;
	struct p11p_stats_backend backends[P11P_MAX_BACKENDS];
	struct p11p_stats_member members[P11P_STATS_MAX_MEMBERS];
};

/* "up", "recovering", "down". */
const char *p11p_stats_state_name(enum p11p_stats_state s);

/*
 * "<state_dir>/stats" and "<state_dir>/stats/<pid>.stats" into buf: -1 when
 * state_dir is not absolute or the path does not fit.
 */
int p11p_stats_dir(const char *state_dir, char *buf, size_t len);
int p11p_stats_path(const char *state_dir, long pid, char *buf, size_t len);
/*
 * A directory entry's name: the pid of a stats file ("123.stats"), or of a
 * writer's temp file (".123.tmp", *tmp set); 0 for other names.
 */
long p11p_stats_name_pid(const char *name, bool *tmp);

/* The text of s (p11p_free it, *len its length), or NULL when out of memory. */
char *p11p_stats_format(const struct p11p_stats *s, size_t *len);
/*
 * Parses a file's text (name: for messages). false with "NAME:LINE: message"
 * in err on any problem (out is then undefined). Bounded: at most
 * P11P_STATS_MAX_BYTES, lines of P11P_STATS_LINE_MAX, P11P_MAX_BACKENDS
 * backend lines and P11P_STATS_MAX_MEMBERS member lines.
 */
bool p11p_stats_parse(const char *name, const char *data, size_t len, struct p11p_stats *out,
                      char *err, size_t errlen);

/*
 * The start time of process pid, in clock ticks after boot (field 22 of
 * /proc/PID/stat), which tells a process from a later one given the same pid;
 * 0 when it cannot be read (no /proc, hidden, gone).
 */
unsigned long long p11p_stats_proc_start(long pid);
/*
 * Is the writer of s still running? kill(pid, 0) (a process of another user
 * counts: EPERM), and the same start time when /proc says.
 */
bool p11p_stats_alive(long pid, unsigned long long start);

#endif
