// The batched system calls behind tunRead/tunWrite/udpRecv/udpSend, and the eventfd drain
// behind eventfdDrain, shared with the bound I/O port (port.cc). Callers have checked every
// length against its buffer; these check each packet's offset and length where the caller's
// arrays choose them (writes and sends).
#ifndef TULLE_BATCH_H_
#define TULLE_BATCH_H_

#include <cstddef>
#include <cstdint>

namespace tulle {

// Reads up to max packets from a TUN fd into buf[i*slot + headroom] (lens[i]), stopping once
// max_bytes have been read. Returns the count, or -errno when the first read fails with other
// than EAGAIN.
int ReadBatch(int fd, uint8_t* buf, int slot, int headroom, int32_t* lens, int max, int64_t max_bytes);

// One write() per packet buf[offs[i], offs[i] + lens[i]); stats = [written, failed, last errno,
// written, bytes]. Returns the packets written.
int WriteBatch(int fd, const uint8_t* buf, size_t buflen, const int32_t* offs, const int32_t* lens, int count,
               int32_t* stats);

// One recvmmsg of up to max datagrams into buf[i*slot + headroom]; segs (UDP_GRO sockets) may be
// null. Returns the count, 0 when nothing waits, or -errno.
int RecvBatch(int fd, uint8_t* buf, int slot, int headroom, int32_t* lens, uint32_t* ips, uint16_t* ports, int max,
              int32_t* segs);

// sendmmsg runs per socket of the batch; segs (UDP_SEGMENT sizes) may be null. stats = [sent,
// failed, last errno, datagrams, bytes]. Returns the messages sent.
int SendBatch(const int32_t* fds, size_t nfds, const uint8_t* buf, size_t buflen, const int32_t* offs, const int32_t* lens,
              const uint8_t* sock_idx, const uint32_t* ips, const uint16_t* ports, int count, const int32_t* segs,
              int32_t* stats);

// Reads the eventfd until EAGAIN so it is no longer readable: 0, -EINVAL if fd is not an
// eventfd, or -errno.
int DrainEventfd(int fd);

}  // namespace tulle

#endif  // TULLE_BATCH_H_
