// BPF iterators (programs of section "iter/<target>"): linked to what they walk, run, and their output read to the
// end, as libbpf's bpf_program__attach_iter and bpf_iter_create do.
#pragma once

#include <cstddef>
#include <vector>

#include "loader/base/fd.hpp"

namespace sockredir::ebpf {

using base::Fd;

// BPF_LINK_CREATE of an iterator over a map (iter/bpf_map_elem, iter/sockmap, ...): the kernel walks `map_fd`,
// which the link holds until it is closed. The kernel refuses a program that reads more of a key than the map has.
Fd link_map_iterator(int prog_fd, int map_fd);

// One run of the iterator of `link_fd`: BPF_ITER_CREATE, then read() until it returns 0. Returns everything the
// program wrote (bpf_seq_write, bpf_seq_printf). A read() is one walk of as many elements as its buffer takes, under
// the kernel's RCU read lock; the output of one run can hold an element twice when a read() ended in the middle of
// a hash bucket (the bucket is walked again), so a program that writes per element writes something the caller
// can count by identity.
std::vector<std::byte> run_iterator(int link_fd);

} // namespace sockredir::ebpf
