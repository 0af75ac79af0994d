// The one exception type the library throws for bad input (config keys, data files,
// shapes). `main` catches it, prints its message on one line and exits non-zero.
// Messages carry their context: the file, the config path, the key or the shape.
#pragma once

#include <stdexcept>
#include <string>

namespace scenic {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace scenic
