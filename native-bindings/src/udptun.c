// tulle_udptun: the least a userspace tunnel can be, for the bench to measure against.
//
// One thread per node, as tulle's one-worker loop: poll() on a TUN device and a UDP socket
// connected to the one peer node; a readable TUN queue is read packet by packet until EAGAIN and
// each packet sent as one datagram; readable datagrams are received until EAGAIN and each written
// to the TUN device. No headers, no peer table, no offloads, no checksums: only the wake-ups and
// system calls every userspace tunnel has. What separates its round trip from tulle's is tulle's
// own work; what separates it from kernel VXLAN's is the cost of leaving the kernel on this machine.
//
// usage: tulle_udptun TUN LOCAL_IP PEER_IP PORT
// Creates TUN (IFF_TUN | IFF_NO_PI; it goes away with the process), prints "ready" once it
// forwards, and runs until killed. The caller brings the device up and routes through it.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int Usage(void) {
  fprintf(stderr, "usage: tulle_udptun TUN LOCAL_IP PEER_IP PORT (TUN 1..15 bytes, IPv4 addresses, PORT 1..65535)\n");
  return 2;
}

static int Fail(const char* what, const char* value) {
  fprintf(stderr, "tulle_udptun: %s %s: %s\n", what, value, strerror(errno));
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 5) return Usage();
  struct sockaddr_in local = {.sin_family = AF_INET}, peer = {.sin_family = AF_INET};
  char* end;
  errno = 0;
  long port = strtol(argv[4], &end, 10);
  if (errno != 0 || end == argv[4] || *end != '\0' || port < 1 || port > 65535) return Usage();
  size_t name_len = strlen(argv[1]);
  if (name_len < 1 || name_len >= IFNAMSIZ || inet_pton(AF_INET, argv[2], &local.sin_addr) != 1 ||
      inet_pton(AF_INET, argv[3], &peer.sin_addr) != 1) {
    return Usage();
  }
  local.sin_port = peer.sin_port = htons((uint16_t)port);

  int tun = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (tun < 0) return Fail("open", "/dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  memcpy(ifr.ifr_name, argv[1], name_len);
  if (ioctl(tun, TUNSETIFF, &ifr) < 0) return Fail("TUNSETIFF", argv[1]);
  int udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (udp < 0) return Fail("socket", "UDP");
  if (bind(udp, (struct sockaddr*)&local, sizeof local) < 0) return Fail("bind", argv[2]);
  if (connect(udp, (struct sockaddr*)&peer, sizeof peer) < 0) return Fail("connect", argv[3]);
  printf("ready\n");
  fflush(stdout);

  static unsigned char buf[65536];
  for (;;) {
    struct pollfd p[2] = {{tun, POLLIN, 0}, {udp, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return Fail("poll", argv[1]);
    }
    if ((p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
      fprintf(stderr, "tulle_udptun: %s went away\n", argv[1]);
      return 1;
    }
    if (p[0].revents != 0) {
      ssize_t n;
      while ((n = read(tun, buf, sizeof buf)) > 0) {
        if (send(udp, buf, (size_t)n, 0) < 0) continue;  // a drop
      }
    }
    if (p[1].revents != 0) {
      ssize_t n;
      while ((n = recv(udp, buf, sizeof buf, 0)) >= 0) {
        if (n > 0 && write(tun, buf, (size_t)n) < 0) continue;  // a drop
      }
    }
  }
}
