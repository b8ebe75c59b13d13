/*
 * delay_relay: a layer-2 relay between two interfaces that delays every frame by a fixed time, for
 * benchmarks on kernels without sch_netem (`tc qdisc ... netem delay` is what it stands in for).
 *
 *   delay_relay IFACE_A IFACE_B DELAY_US
 *
 * Frames read on one interface (AF_PACKET, promiscuous) are sent out of the other DELAY_US microseconds
 * later, in order. One thread, poll() plus clock_nanosleep() for the sub-millisecond part. Runs until
 * SIGTERM/SIGINT. Built by scripts/bench/tftp.ts with `cc -O2`.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define QUEUE 65536 /* frames in flight per direction */
#define FRAME 65600

struct slot {
  uint64_t due_ns;
  uint32_t len;
  unsigned char *data;
};

struct dir {
  int in, out;
  struct slot q[QUEUE];
  unsigned head, tail; /* head: next to send; tail: next free */
};

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int open_iface(const char *name) {
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
  if (fd < 0) { perror("socket"); exit(1); }
  struct sockaddr_ll sll = {0};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = (int)if_nametoindex(name);
  if (sll.sll_ifindex == 0) { fprintf(stderr, "no interface %s\n", name); exit(1); }
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) { perror("bind"); exit(1); }
  struct packet_mreq mr = {0};
  mr.mr_ifindex = sll.sll_ifindex;
  mr.mr_type = PACKET_MR_PROMISC;
  setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr);
  /* frames we send ourselves must not come back to us */
  int one = 1;
  setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
  int buf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  return fd;
}

/*
 * veth hands frames over with the UDP checksum left for the NIC to fill in (CHECKSUM_PARTIAL); once we
 * re-inject them they would be dropped as corrupt, so IPv4/UDP checksums are recomputed here.
 */
static void fix_udp_checksum(unsigned char *f, size_t len) {
  if (len < 14 + 20 + 8 || f[12] != 0x08 || f[13] != 0x00) return;
  unsigned char *ip = f + 14;
  size_t ihl = (size_t)(ip[0] & 15) * 4;
  if (ip[9] != 17 || len < 14 + ihl + 8) return;
  if (((ip[6] & 0x3f) | ip[7]) != 0) return; /* a fragment: leave it */
  unsigned char *udp = ip + ihl;
  size_t ulen = ((size_t)udp[4] << 8) | udp[5];
  if (ulen < 8 || 14 + ihl + ulen > len) return;
  uint32_t sum = 0;
  for (int i = 12; i < 20; i += 2) sum += (uint32_t)((ip[i] << 8) | ip[i + 1]);
  sum += 17 + (uint32_t)ulen;
  udp[6] = udp[7] = 0;
  for (size_t i = 0; i + 1 < ulen; i += 2) sum += (uint32_t)((udp[i] << 8) | udp[i + 1]);
  if (ulen & 1) sum += (uint32_t)(udp[ulen - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  uint16_t c = (uint16_t)~sum;
  if (c == 0) c = 0xffff;
  udp[6] = (unsigned char)(c >> 8);
  udp[7] = (unsigned char)c;
}

static void drain(struct dir *d, uint64_t delay) {
  for (;;) {
    struct slot *s = &d->q[d->tail % QUEUE];
    if (d->tail - d->head >= QUEUE) return; /* full: the kernel buffers the rest */
    if (!s->data) s->data = malloc(FRAME);
    ssize_t n = recv(d->in, s->data, FRAME, 0);
    if (n <= 0) return;
    s->len = (uint32_t)n;
    fix_udp_checksum(s->data, (size_t)n);
    s->due_ns = now_ns() + delay;
    d->tail++;
  }
}

static void flush(struct dir *d, uint64_t t) {
  while (d->head != d->tail) {
    struct slot *s = &d->q[d->head % QUEUE];
    if (s->due_ns > t) return;
    if (send(d->out, s->data, s->len, 0) < 0 && errno == EAGAIN) return;
    d->head++;
  }
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s IFACE_A IFACE_B DELAY_US\n", argv[0]);
    return 2;
  }
  uint64_t delay = (uint64_t)strtoull(argv[3], NULL, 10) * 1000ull;
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  int a = open_iface(argv[1]), b = open_iface(argv[2]);
  static struct dir ab, ba;
  ab.in = a; ab.out = b;
  ba.in = b; ba.out = a;
  printf("ready\n");
  fflush(stdout);
  while (!stop) {
    uint64_t t = now_ns();
    flush(&ab, t);
    flush(&ba, t);
    uint64_t next = UINT64_MAX;
    if (ab.head != ab.tail) next = ab.q[ab.head % QUEUE].due_ns;
    if (ba.head != ba.tail && ba.q[ba.head % QUEUE].due_ns < next) next = ba.q[ba.head % QUEUE].due_ns;
    int timeout_ms = 100;
    if (next != UINT64_MAX) {
      uint64_t wait = next > t ? next - t : 0;
      if (wait < 1000000ull) {
        /* under a millisecond: sleep precisely unless a frame arrives first (checked right after) */
        struct pollfd quick[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
        if (poll(quick, 2, 0) == 0 && wait > 0) {
          struct timespec ts = {0, (long)(wait < 50000ull ? wait : 50000ull)};
          clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
        }
        drain(&ab, delay);
        drain(&ba, delay);
        continue;
      }
      timeout_ms = (int)(wait / 1000000ull);
    }
    struct pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    if (poll(fds, 2, timeout_ms) > 0) {
      if (fds[0].revents & POLLIN) drain(&ab, delay);
      if (fds[1].revents & POLLIN) drain(&ba, delay);
    }
  }
  return 0;
}
