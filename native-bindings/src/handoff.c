// tulle_handoff: what four hand-offs between processes cost on this machine, with no networking.
//
// A round trip through a userspace tunnel on a two-node lab hands each ping through four wake-ups
// of another process: the pod's ping wakes node 1's agent, which wakes node 2's agent, which wakes
// node 1's agent again, which wakes ping. This program does exactly that with three processes and
// pipes (P -> A -> B -> A -> P), each side blocking in poll() as a forwarding loop does, a byte per
// hop, and a pause between rounds as between pings. The p50 is the least such a design adds to the
// kernel's own path on this machine: the scheduler's placement, idle vCPU wake-ups and context
// switches, and nothing of tulle's.
//
// usage: tulle_handoff ROUNDS GAP_US   ->   {"rounds":N,"gapUs":G,"p50Us":x,"p99Us":y} on stdout
// Pin it with taskset to measure a placement; the children inherit the CPU set.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kMaxRounds = 100000, kMaxGapUs = 1000000 };

// In a relaying child: die with the parent, and keep the caller's stdout and stderr pipes free, so
// whoever waits for them sees them close when the parent ends.
static void Child(pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  int null = open("/dev/null", O_WRONLY);
  if (null >= 0) {
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    if (null > STDERR_FILENO) close(null);
  }
}

static int WaitRead(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  for (;;) {
    int n = poll(&p, 1, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r == 1) return 0;
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    return -1;  // 0: the writer is gone
  }
}

static int WriteByte(int fd) {
  const char c = 'x';
  for (;;) {
    ssize_t r = write(fd, &c, 1);
    if (r == 1) return 0;
    if (r < 0 && errno == EINTR) continue;
    return -1;
  }
}

static long long NowNs(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int Compare(const void* a, const void* b) {
  long long x = *(const long long*)a, y = *(const long long*)b;
  return x < y ? -1 : x > y;
}

static int ParseInt(const char* s, long lo, long hi, long* out) {
  char* end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int main(int argc, char** argv) {
  long rounds, gap_us;
  if (argc != 3 || ParseInt(argv[1], 1, kMaxRounds, &rounds) < 0 || ParseInt(argv[2], 0, kMaxGapUs, &gap_us) < 0) {
    fprintf(stderr, "usage: tulle_handoff ROUNDS GAP_US (ROUNDS 1..%d, GAP_US 0..%d)\n", kMaxRounds, kMaxGapUs);
    return 2;
  }
  // p_a: P -> A, a_b: A -> B, b_a: B -> A, a_p: A -> P. Each process closes the ends it does not
  // use, so a process that dies is seen as end of file by the one reading from it.
  int p_a[2], a_b[2], b_a[2], a_p[2];
  if (pipe(p_a) < 0 || pipe(a_b) < 0 || pipe(b_a) < 0 || pipe(a_p) < 0) {
    fprintf(stderr, "tulle_handoff: pipe: %s\n", strerror(errno));
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);  // a write to a dead process fails with EPIPE instead
  const pid_t parent = getpid();
  pid_t b = fork();
  if (b == 0) {  // B: echoes A's byte back to A.
    Child(parent);
    close(p_a[0]), close(p_a[1]), close(a_p[0]), close(a_p[1]), close(a_b[1]), close(b_a[0]);
    for (;;) {
      if (WaitRead(a_b[0]) < 0 || WriteByte(b_a[1]) < 0) _exit(0);
    }
  }
  pid_t a = b < 0 ? -1 : fork();
  if (a == 0) {  // A: P's byte to B, B's byte to P.
    Child(parent);
    close(p_a[1]), close(a_p[0]), close(a_b[0]), close(b_a[1]);
    for (;;) {
      if (WaitRead(p_a[0]) < 0 || WriteByte(a_b[1]) < 0 || WaitRead(b_a[0]) < 0 || WriteByte(a_p[1]) < 0) _exit(0);
    }
  }
  if (a < 0) {
    fprintf(stderr, "tulle_handoff: fork: %s\n", strerror(errno));
    if (b > 0) kill(b, SIGKILL);
    return 1;
  }
  close(p_a[0]), close(a_p[1]), close(a_b[0]), close(a_b[1]), close(b_a[0]), close(b_a[1]);
  long long* ns = malloc(sizeof(long long) * (size_t)rounds);
  int failed = ns == NULL, err = ns == NULL ? ENOMEM : 0;
  for (long i = 0; i < rounds && !failed; i++) {
    if (gap_us > 0) {
      struct timespec gap = {gap_us / 1000000, (gap_us % 1000000) * 1000};
      while (nanosleep(&gap, &gap) < 0 && errno == EINTR) {
      }
    }
    long long t0 = NowNs();
    errno = 0;
    if (WriteByte(p_a[1]) < 0 || WaitRead(a_p[0]) < 0) {
      failed = 1;
      err = errno;
    } else {
      ns[i] = NowNs() - t0;
    }
  }
  kill(a, SIGKILL);
  kill(b, SIGKILL);
  waitpid(a, NULL, 0);
  waitpid(b, NULL, 0);
  if (failed) {
    fprintf(stderr, "tulle_handoff: a hand-off failed: %s\n", err != 0 ? strerror(err) : "a relaying process exited");
    return 1;
  }
  qsort(ns, (size_t)rounds, sizeof ns[0], Compare);
  // Nearest rank, as the bench's ping figures.
  long p50 = (rounds * 50 + 99) / 100 - 1, p99 = (rounds * 99 + 99) / 100 - 1;
  printf("{\"rounds\":%ld,\"gapUs\":%ld,\"p50Us\":%.1f,\"p99Us\":%.1f}\n", rounds, gap_us, ns[p50] / 1000.0, ns[p99] / 1000.0);
  free(ns);
  return 0;
}
