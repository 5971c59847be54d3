/*
 * banguard.h - the banguard access library (libbanguard.so.0)
 *
 * A tcp_wrappers-style question for daemons: "may this client use this
 * service?", answered from the same config (/etc/banguard/banguard.toml)
 * and the same store (one SQLite file) as pam_banguard.so and banguardctl.
 * A host refused here is refused by the PAM module too, and the other way
 * round; `banguardctl list|unban` sees and lifts bans made through this
 * library.
 *
 * Typical daemon (faillock-style: check, authenticate, record):
 *
 *     banguard_t *bg;
 *     if (banguard_open(NULL, &bg) != BANGUARD_OK)
 *         log("banguard: %s", banguard_last_error(NULL));  // then fail open or closed
 *     ...
 *     int r = banguard_check(bg, "myftpd", peer_ip);      // peer_ip: numeric
 *     if (r == BANGUARD_DENY) refuse();
 *     else if (r < 0) log("banguard: %s", banguard_last_error(bg));
 *     if (password_ok) banguard_record_success(bg, "myftpd", peer_ip, user);
 *     else if (banguard_record_failure(bg, "myftpd", peer_ip, user) == BANGUARD_DENY)
 *         disconnect();                                   // this failure banned it
 *
 * Build: cc $(pkg-config --cflags banguard) prog.c $(pkg-config --libs banguard)
 *
 * Results. Every int-returning function returns one of the values below.
 * Errors are negative; the message is in banguard_last_error().
 *
 *   BANGUARD_ALLOW  (1)  the client may use the service / may still try
 *   BANGUARD_DENY   (0)  the client is refused: banned, or out of tries
 *   BANGUARD_OK     (0)  success of banguard_open / banguard_record_success
 *   BANGUARD_EINVAL     (-1) NULL handle or string, text that is not UTF-8,
 *                            an empty service or "*", a client_addr that is
 *                            not an IPv4/IPv6 address literal
 *   BANGUARD_ECONFIG    (-2) the config cannot be read or is invalid (the
 *                            message names the file, line and key)
 *   BANGUARD_EINSECURE  (-3) the config or the store is writable by someone
 *                            other than root (or the calling user): refused
 *   BANGUARD_ESTORE     (-4) the store cannot be opened or used (directory
 *                            missing, unsafe or not writable, disk full,
 *                            corrupt, newer schema), or this call's turn at
 *                            it did not come within busy_timeout_ms (an
 *                            overload: nothing was counted). Either way the
 *                            attempt is unaccounted for: do not let the
 *                            client's password be checked uncounted.
 *   BANGUARD_EPANIC     (-5) internal error in libbanguard (a bug; it was
 *                            caught, nothing was printed, the handle remains
 *                            usable)
 *
 * Fail open or closed? An error is neither ALLOW nor DENY. Test
 * `r == BANGUARD_ALLOW` to refuse on errors (fail closed), or
 * `r != BANGUARD_DENY` to let clients in on errors (fail open, what
 * pam_banguard does with the default `failmode = "open"`). Never test `!r`
 * or `r` alone: a negative error would count as "allowed".
 *
 * Client addresses. client_addr is the peer's numeric address as text:
 * "198.51.100.7", "2001:db8::1", "[2001:db8::1]", "fe80::1%eth0" and
 * "::ffff:198.51.100.7" (the same host as 198.51.100.7) are accepted. A host
 * name is BANGUARD_EINVAL: a daemon has the socket address (getpeername(2) +
 * getnameinfo(3) with NI_NUMERICHOST), and banguard never resolves names.
 * Addresses in the config's `ignoreip`, services with `enabled = false`:
 * always BANGUARD_ALLOW, nothing recorded.
 *
 * Services. service names the `[services.<name>]` section of the config
 * (the `[default]` policy when there is none) and is what bans are
 * recorded under: use the daemon's PAM service name if it has one, so that
 * the PAM module and the library count the same tries.
 *
 * Privileges. The store (/var/lib/banguard/banguard.db, 0600 root) is
 * opened read-write: call banguard_open as root (before dropping
 * privileges; the open handle keeps working afterwards).
 *
 * Threads and processes. Calls on one handle are serialised by a lock
 * inside it, so a handle may be shared between threads (calls then wait for
 * one another; one handle per thread avoids that). banguard_last_error(bg)
 * describes the calling thread's most recent call on the handle: each
 * thread gets its own copy of the message, which no other thread's call
 * can change or free.
 * Do not use one handle in both a parent and a child after fork(2) (SQLite
 * connections must not cross fork): open it in the process that uses it, or
 * only in one of the two. The config is read once, at banguard_open; open a
 * new handle to pick up changes (e.g. on SIGHUP).
 *
 * Strings passed in are only read during the call. Strings returned are
 * owned by the library: never free them.
 */
#ifndef BANGUARD_H
#define BANGUARD_H

#ifdef __cplusplus
extern "C" {
#endif

#define BANGUARD_VERSION_MAJOR 0
#define BANGUARD_VERSION_MINOR 1
#define BANGUARD_VERSION_PATCH 0
/* major * 10000 + minor * 100 + patch, as banguard_version() returns it. */
#define BANGUARD_VERSION_NUMBER \
    (BANGUARD_VERSION_MAJOR * 10000 + BANGUARD_VERSION_MINOR * 100 + BANGUARD_VERSION_PATCH)

#define BANGUARD_ALLOW 1
#define BANGUARD_DENY 0
#define BANGUARD_OK 0
#define BANGUARD_EINVAL (-1)
#define BANGUARD_ECONFIG (-2)
#define BANGUARD_EINSECURE (-3)
#define BANGUARD_ESTORE (-4)
#define BANGUARD_EPANIC (-5)

#if defined(__GNUC__) || defined(__clang__)
#define BANGUARD_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define BANGUARD_WARN_UNUSED
#endif

/* An open config + store. Opaque. */
typedef struct banguard banguard_t;

/*
 * Reads the config and opens the store it names.
 *   config_path  the config file, which must exist (the *.toml files of its
 *                drop-in directory <dir>/<stem>.d are read too); NULL for
 *                the default /etc/banguard/banguard.toml, whose absence
 *                means built-in defaults.
 *   out          receives the handle; set to NULL on failure.
 * Returns BANGUARD_OK, or BANGUARD_EINVAL (out NULL, path not UTF-8),
 * BANGUARD_ECONFIG, BANGUARD_EINSECURE, BANGUARD_ESTORE, BANGUARD_EPANIC;
 * on failure the message is banguard_last_error(NULL) (this thread).
 */
BANGUARD_WARN_UNUSED int banguard_open(const char *config_path, banguard_t **out);

/* Closes the store and frees the handle. NULL: does nothing. The handle
 * must not be used again, nor by another thread during the call. */
void banguard_close(banguard_t *bg);

/*
 * The message of the calling thread's most recent call on bg if it failed,
 * "" if it succeeded (or if this thread made none). With bg NULL: the same
 * for the most recent call in this thread that had no handle
 * (banguard_open, banguard_ctl, a call with a NULL handle). Never NULL.
 * The string is this thread's own copy: valid until this thread's next
 * call on bg (bg NULL: its next such call), whatever other threads do.
 */
const char *banguard_last_error(const banguard_t *bg);

/*
 * The hosts_ctl() question: may client_addr use service? Refuses a host
 * that is banned (on this service or on all services, also through a
 * network ban covering it) or has used up its tries. Records no attempt;
 * but a host found to have used up its tries gets its ban created (as the
 * PAM module's preauth line does), and a refusal counts towards
 * [sync] escalate_after, so a host that keeps knocking goes to the kernel.
 * Returns BANGUARD_ALLOW, BANGUARD_DENY, or a negative error
 * (BANGUARD_EINVAL, BANGUARD_ESTORE, BANGUARD_EINSECURE, BANGUARD_EPANIC).
 */
BANGUARD_WARN_UNUSED int banguard_check(banguard_t *bg, const char *service, const char *client_addr);

/*
 * banguard_check for a password about to be checked for account user
 * (NULL: as banguard_check): also refuses when the account is locked for
 * unfamiliar sources and client_addr is not in one of its familiar
 * networks ([accounts] in banguard.toml(5)). Like banguard_check it takes
 * nothing of the account's budget: banguard_record_failure counts the
 * failure, banguard_record_success gives it back and makes the client's
 * network familiar for user. The answer is the same whether the account
 * exists or not.
 */
BANGUARD_WARN_UNUSED int banguard_check_user(banguard_t *bg, const char *service, const char *client_addr,
                                             const char *user);

/*
 * Records one failed authentication of client_addr on service, for account
 * user (may be NULL). When this makes `maxretry` failures within
 * `findtime`, the host is banned at once (syslog authpriv line, sync
 * trigger touched). From an unfamiliar source, the failure also counts
 * against the account's budget, and may lock the account for unfamiliar
 * sources (syslog line, trigger).
 * Returns BANGUARD_ALLOW if the host may still try, BANGUARD_DENY if this
 * failure banned it or it was banned already, or locked the account, or a
 * negative error.
 */
BANGUARD_WARN_UNUSED int banguard_record_failure(banguard_t *bg, const char *service,
                                                 const char *client_addr, const char *user);

/*
 * Records a successful authentication (user may be NULL). With
 * `reset_on_success = true` for the service, the host's counted failures
 * there are forgotten; otherwise they stay (a valid account is no way to
 * keep guessing). The client's network becomes familiar for user: call it
 * only once the password was checked and right.
 * Returns BANGUARD_OK or a negative error.
 */
int banguard_record_success(banguard_t *bg, const char *service, const char *client_addr,
                            const char *user);

/*
 * One-shot hosts_ctl(): banguard_open(NULL), banguard_check, banguard_close.
 * Arguments are checked before any file is opened. Opens the store on every
 * call: daemons handling many clients should keep a handle instead.
 * Returns BANGUARD_ALLOW, BANGUARD_DENY, or a negative error whose message
 * is banguard_last_error(NULL).
 */
BANGUARD_WARN_UNUSED int banguard_ctl(const char *service, const char *client_addr);

/* A static English description of any result code ("unknown banguard
 * result code" for others). Never NULL. */
const char *banguard_strerror(int code);

/* The library's version, major * 10000 + minor * 100 + patch; compare with
 * BANGUARD_VERSION_NUMBER to detect a header/library mismatch. */
int banguard_version(void);

#ifdef __cplusplus
}
#endif

#endif /* BANGUARD_H */
