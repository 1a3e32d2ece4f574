#include "controlplane/store/store.h"

namespace skiff::store {

std::string prefixEnd(const std::string& prefix) {
  std::string end = prefix;
  // Bytes compare unsigned, so 0xff cannot be incremented: drop it and carry into the byte before.
  while (!end.empty()) {
    auto last = static_cast<unsigned char>(end.back());
    if (last != 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  // No finite key is greater than every key with this prefix; "" stands for "no upper bound".
  return end;
}

}  // namespace skiff::store
