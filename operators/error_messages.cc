// Each MXNetError from this library shows only its own messages.
//
// lib_api.cc (MXNet 1.9.1) keeps every message the library ever added (MX_ERROR_MSG), and MXNet
// shows all of them with each failure: the 1000th error of a process carried 999 stale ones.
// Its _msgSize/_msgGet are renamed at compile time (Makefile: lib_api.o) and replaced by these,
// which hand MXNet only the messages added since the previous error was read. Compiled without
// vector instructions: MXNet calls them when initialize() fails on an older CPU.
#include <mutex>
#include <string>

#include "mxnet/lib_api.h"

using mxnet::ext::MXerrorMsgs;

namespace {
std::mutex guard;
int first_unread = 0;  // messages before this index belong to errors already reported
std::string last;      // the text handed out by the latest _msgGet (MXNet copies it at once)
}  // namespace

extern "C" {

MX_INT_RET _msgSize() {
  std::lock_guard<std::mutex> lock(guard);
  return MXerrorMsgs::get()->size() - first_unread;
}

// MXNet reads messages 0 .. _msgSize() - 1 of an error in order; reading the last one
// marks them all as reported.
MX_VOID_RET _msgGet(int idx, const char** msg) {
  std::lock_guard<std::mutex> lock(guard);
  const int total = MXerrorMsgs::get()->size();
  const int at = first_unread + idx;
  if (idx < 0 || at >= total) {
    last = "(no such message)";
  } else {
    const std::string* text = MXerrorMsgs::get()->get(at);  // a new string: lib_api leaks it
    last = *text;
    delete text;
  }
  if (at >= total - 1) first_unread = total;
  *msg = last.c_str();
}

}  // extern "C"
