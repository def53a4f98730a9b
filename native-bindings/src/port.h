// The I/O ports one environment has open (port.cc), by handle.
#ifndef TULLE_PORT_H_
#define TULLE_PORT_H_

#include <vector>

namespace tulle {

struct Port;

// Not thread-safe: used only on its environment's thread.
class PortRegistry {
 public:
  PortRegistry() = default;
  ~PortRegistry();  // frees the ports still open (their references go with the environment)
  PortRegistry(const PortRegistry&) = delete;
  PortRegistry& operator=(const PortRegistry&) = delete;
  PortRegistry(PortRegistry&&) = delete;
  PortRegistry& operator=(PortRegistry&&) = delete;
  // Takes ownership and returns the handle.
  int Add(Port* p);
  // The port with handle h, or null.
  Port* Get(int h) const;
  // Gives up ownership of the port with handle h (null if none); the handle is not reused.
  Port* Take(int h);

 private:
  std::vector<Port*> ports_;
};

}  // namespace tulle

#endif  // TULLE_PORT_H_
