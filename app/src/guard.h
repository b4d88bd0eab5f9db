// SPDX-License-Identifier: Apache-2.0
// guard.h - (in-tree) the one place where the engine's exceptions become the API's problems.
#pragma once

#include <filesystem>
#include <new>
#include <string>

#include "moereg/app/result.h"
#include "moereg/base/cancel.h"
#include "moereg/base/error.h"

namespace moereg::app {

// Runs f and returns its value, or the problem its exception describes. Nothing escapes.
template <class F>
auto guarded(F&& f) noexcept -> result<decltype(f())> {
  try {
    return f();
  } catch (const cancelled& e) {
    return problem{error_kind::cancelled, e.what(), e.signal_number() > 0 ? e.signal_number() : 0};
  } catch (const usage_error& e) {
    return problem{error_kind::usage, e.what()};
  } catch (const error& e) {
    return problem{error_kind::input, e.what()};
  } catch (const std::filesystem::filesystem_error& e) {
    // What the file system refused (a symlink loop, a permission) is the input's problem, said
    // as "path: reason" like the engine's own errors rather than the library's "status: ...".
    std::string where = e.path1().string();
    if (!e.path2().empty()) where += ", " + e.path2().string();
    return problem{error_kind::input, (where.empty() ? std::string() : where + ": ") + e.code().message()};
  } catch (const std::bad_alloc&) {
    return problem{error_kind::internal, "out of memory"};
  } catch (const std::exception& e) {
    return problem{error_kind::internal, e.what()};
  } catch (...) {
    return problem{error_kind::internal, "an exception that is not a std::exception"};
  }
}

}  // namespace moereg::app
