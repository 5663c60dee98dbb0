// A fake bpf(2) behind ebpf::sys::override_bpf, for the decision logic above the syscalls without root (aya's
// sys/fake.rs override_syscall): it answers BPF_PROG_LOAD, BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, BPF_BTF_LOAD,
// BPF_LINK_CREATE, BPF_ITER_CREATE and BPF_PROG_TEST_RUN with the errnos, verifier logs and outputs a test
// chooses, gives BPF_OBJ_GET_INFO_BY_FD of the maps it created, and records what it was asked.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "loader/ebpf/sys.hpp"

namespace sockredir::test {

// Installs itself as the bpf(2) backend for its lifetime; one at a time.
class FakeKernel {
public:
    // A refusal: the errno and what the verifier writes into attr.log_buf when the caller gave one.
    struct Answer {
        int err = 0;
        std::string log;
    };
    // One call as asked: the command, and the program or map type it names (0 for the others).
    struct Call {
        int cmd;
        uint32_t type;
    };

    FakeKernel();
    ~FakeKernel();
    FakeKernel(const FakeKernel&) = delete;
    FakeKernel& operator=(const FakeKernel&) = delete;

    // Every call fails with this errno (ENOSYS: no bpf(2); EPERM: a caller refused outright); 0: answer per feature.
    int all = 0;
    // BPF_PROG_LOAD of these types: EINVAL before the verifier runs, so no log (the kernel does not know the type).
    std::set<uint32_t> no_prog_types;
    // BPF_MAP_CREATE of these types: EINVAL.
    std::set<uint32_t> no_map_types;
    // BPF_PROG_LOAD of a program of this type calling this helper: refused so.
    std::map<std::pair<uint32_t, uint32_t>, Answer> helper_answers;
    // What BPF_BTF_LOAD says; 0: loaded.
    int btf_err = 0;
    // BPF_BTF_LOAD of a blob with a type of these kinds (BTF_KIND_*): EINVAL, as a kernel that lacks the kind says,
    // with a line of log where the caller gave a buffer.
    std::set<uint32_t> no_btf_kinds;
    // BPF_MAP_CREATE of these map types with a BTF key or value type: EINVAL (a sockhash on older kernels).
    std::set<uint32_t> no_btf_map_types;
    // BPF_PROG_LOAD of a program of this type: refused so, the log written where the caller gave a buffer.
    std::map<uint32_t, Answer> prog_answers;
    // What BPF_LINK_CREATE says: EBADF is what a kernel with links says of the probe's target -1; 0: linked.
    int link_err = EBADF;
    // What read() of a BPF_ITER_CREATE descriptor returns, to its end.
    std::vector<std::byte> iter_output;
    // The retval of BPF_PROG_TEST_RUN.
    uint32_t test_run_retval = 0;
    // BPF_PROG_LOAD fails this many times with EAGAIN before it answers as above (a transient failure).
    int transient_failures = 0;

    std::vector<Call> calls;
    size_t count(int cmd, uint32_t type) const;

    // What the loader asked, in order, with the descriptors the fake answered (-1 for a refusal).
    struct BtfLoad {
        std::vector<std::byte> blob;
        bool with_log = false;
        int fd = -1;
    };
    std::vector<BtfLoad> btf_loads;
    struct MapCreate {
        uint32_t type = 0;
        std::string name;
        int btf_fd = -1; // -1: no BTF (attr.btf_fd 0 with no type ids)
        uint32_t btf_key_type_id = 0;
        uint32_t btf_value_type_id = 0;
        int fd = -1;
    };
    std::vector<MapCreate> map_creates;
    struct MapUpdate {
        int map_fd = -1;
        std::vector<std::byte> key, value; // the created map's key_size and value_size bytes
        uint64_t flags = 0;
    };
    std::vector<MapUpdate> map_updates;
    struct ProgLoad {
        uint32_t type = 0;
        std::string name;
        int prog_btf_fd = -1; // -1: none
        std::vector<bpf_func_info> func_info;
        std::vector<bpf_line_info> line_info;
        uint32_t log_level = 0;
        int fd = -1;
    };
    std::vector<ProgLoad> prog_loads;
    struct LinkCreate {
        int prog_fd = -1;
        int target_fd = -1;
        uint32_t attach_type = 0;
        uint32_t iter_info_len = 0;
        bpf_iter_link_info iter_info{}; // copied from attr.link_create.iter_info when given
        int fd = -1;
    };
    std::vector<LinkCreate> link_creates;
    struct IterCreate {
        int link_fd = -1;
        uint32_t flags = 0;
        int fd = -1;
    };
    std::vector<IterCreate> iter_creates;
    struct TestRun {
        int prog_fd = -1;
        std::vector<std::byte> data;
        uint32_t repeat = 0;
    };
    std::vector<TestRun> test_runs;

private:
    static long call(int cmd, bpf_attr& attr);
    long answer(int cmd, bpf_attr& attr);

    long map_create(const bpf_attr& attr);
    long map_update(const bpf_attr& attr);
    long prog_load(bpf_attr& attr);
    long btf_load(bpf_attr& attr);
    long link_create(const bpf_attr& attr);
    long iter_create(const bpf_attr& attr);
    long test_run(bpf_attr& attr);
    long info(const bpf_attr& attr); // of the maps it created only

    ebpf::sys::BpfCall previous_;
    std::map<int, std::pair<uint32_t, uint32_t>> map_sizes_; // fd -> key_size, value_size
    std::map<int, uint32_t> map_types_;
};

} // namespace sockredir::test
