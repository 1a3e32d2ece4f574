#include <string>

#include "controlplane/scheduler/scheduler_impl.h"

namespace skiff::controlplane::scheduler::detail {

bool exceeds(const Resources& used, const Reservation& reservation) {
  bool any = used.cpu > kCpuEpsilon || used.memoryMB > 0 || used.diskMB > 0 ||
             used.networkMbps > 0 || used.gpu > 0;
  if (reservation.count <= 0) return any;
  Resources total = reservation.total();
  const Resources& shape = reservation.shape;
  return (shape.cpu > 0 && used.cpu > total.cpu + kCpuEpsilon) ||
         (shape.memoryMB > 0 && used.memoryMB > total.memoryMB) ||
         (shape.diskMB > 0 && used.diskMB > total.diskMB) ||
         (shape.networkMbps > 0 && used.networkMbps > total.networkMbps) ||
         (shape.gpu > 0 && used.gpu > total.gpu);
}

Resources zero() {
  return {0, 0, 0, 0, 0};
}

std::string resourceKey(const Resources& r) {
  return std::to_string(r.cpu) + "/" + std::to_string(r.memoryMB) + "/" + std::to_string(r.diskMB) +
         "/" + std::to_string(r.networkMbps) + "/" + std::to_string(r.gpu);
}

json resourcesJson(const Resources& r) {
  return {{"cpu", r.cpu},
          {"memoryMB", r.memoryMB},
          {"diskMB", r.diskMB},
          {"networkMbps", r.networkMbps},
          {"gpu", r.gpu}};
}

}  // namespace skiff::controlplane::scheduler::detail

namespace skiff::controlplane::scheduler {

using detail::kCpuEpsilon;
using detail::within;

Resources Reservation::total() const {
  return {shape.cpu * static_cast<double>(count), shape.memoryMB * count, shape.diskMB * count,
          shape.networkMbps * count, shape.gpu * count};
}

bool fits(const Resources& capacity, const Resources& used, const Resources& request) {
  Resources after = used;
  addResources(after, request);
  return within(after, capacity);
}

void subtractResources(Resources& total, const Resources& delta) {
  total.cpu -= delta.cpu;
  if (total.cpu < kCpuEpsilon) total.cpu = 0;
  total.memoryMB -= delta.memoryMB;
  total.diskMB -= delta.diskMB;
  total.networkMbps -= delta.networkMbps;
  total.gpu -= delta.gpu;
}

}  // namespace skiff::controlplane::scheduler
