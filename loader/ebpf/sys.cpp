// bpf(2) wrappers. Nothing else in sockredir calls syscall(SYS_bpf, ...).
#include "loader/ebpf/sys.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "loader/base/error.hpp"

namespace sockredir::ebpf::sys {

namespace {

const char* command_name(int cmd)
{
    switch (cmd) {
    case BPF_MAP_CREATE:
        return "BPF_MAP_CREATE";
    case BPF_MAP_LOOKUP_ELEM:
        return "BPF_MAP_LOOKUP_ELEM";
    case BPF_MAP_UPDATE_ELEM:
        return "BPF_MAP_UPDATE_ELEM";
    case BPF_MAP_GET_NEXT_KEY:
        return "BPF_MAP_GET_NEXT_KEY";
    case BPF_PROG_LOAD:
        return "BPF_PROG_LOAD";
    case BPF_OBJ_PIN:
        return "BPF_OBJ_PIN";
    case BPF_OBJ_GET:
        return "BPF_OBJ_GET";
    case BPF_PROG_ATTACH:
        return "BPF_PROG_ATTACH";
    case BPF_PROG_DETACH:
        return "BPF_PROG_DETACH";
    case BPF_PROG_QUERY:
        return "BPF_PROG_QUERY";
    case BPF_BTF_LOAD:
        return "BPF_BTF_LOAD";
    case BPF_LINK_CREATE:
        return "BPF_LINK_CREATE";
    case BPF_LINK_DETACH:
        return "BPF_LINK_DETACH";
    case BPF_OBJ_GET_INFO_BY_FD:
        return "BPF_OBJ_GET_INFO_BY_FD";
    case BPF_PROG_GET_NEXT_ID:
        return "BPF_PROG_GET_NEXT_ID";
    case BPF_MAP_GET_NEXT_ID:
        return "BPF_MAP_GET_NEXT_ID";
    case BPF_LINK_GET_NEXT_ID:
        return "BPF_LINK_GET_NEXT_ID";
    case BPF_PROG_GET_FD_BY_ID:
        return "BPF_PROG_GET_FD_BY_ID";
    case BPF_MAP_GET_FD_BY_ID:
        return "BPF_MAP_GET_FD_BY_ID";
    case BPF_RAW_TRACEPOINT_OPEN:
        return "BPF_RAW_TRACEPOINT_OPEN";
    case BPF_ENABLE_STATS:
        return "BPF_ENABLE_STATS";
    case BPF_MAP_DELETE_ELEM:
        return "BPF_MAP_DELETE_ELEM";
    case BPF_ITER_CREATE:
        return "BPF_ITER_CREATE";
    case BPF_PROG_TEST_RUN:
        return "BPF_PROG_TEST_RUN";
    default:
        return "bpf";
    }
}

long kernel_bpf(int cmd, bpf_attr& attr)
{
    return ::syscall(SYS_bpf, cmd, &attr, sizeof attr);
}

BpfCall backend = kernel_bpf;

long bpf(int cmd, bpf_attr& attr)
{
    long ret;
    do {
        ret = backend(cmd, attr);
    } while (ret < 0 && errno == EINTR);
    return ret;
}

Fd bpf_fd(int cmd, bpf_attr& attr, const std::string& what)
{
    long ret = bpf(cmd, attr);
    if (ret < 0)
        throw Error(command_name(cmd), what, errno);
    return Fd(static_cast<int>(ret));
}

void bpf_void(int cmd, bpf_attr& attr, const std::string& what)
{
    if (bpf(cmd, attr) < 0)
        throw Error(command_name(cmd), what, errno);
}

uint64_t ptr(const void* p)
{
    return reinterpret_cast<uintptr_t>(p);
}

void set_name(char (&dst)[BPF_OBJ_NAME_LEN], const std::string& name)
{
    std::memset(dst, 0, sizeof dst);
    std::memcpy(dst, name.data(), std::min(name.size(), sizeof dst - 1));
}

template <typename Info> Info info_by_fd(int fd, const char* what)
{
    Info info{};
    bpf_attr attr{};
    attr.info.bpf_fd = static_cast<uint32_t>(fd);
    attr.info.info_len = sizeof info;
    attr.info.info = ptr(&info);
    bpf_void(BPF_OBJ_GET_INFO_BY_FD, attr, what);
    return info;
}

std::vector<uint32_t> all_ids(int cmd)
{
    std::vector<uint32_t> ids;
    uint32_t id = 0;
    for (;;) {
        bpf_attr attr{};
        attr.start_id = id;
        if (bpf(cmd, attr) < 0) {
            if (errno == ENOENT)
                return ids;
            throw Error(command_name(cmd), "walking object ids", errno);
        }
        id = attr.next_id;
        ids.push_back(id);
    }
}

Fd fd_by_id(int cmd, uint32_t id, const char* what)
{
    bpf_attr attr{};
    if (cmd == BPF_PROG_GET_FD_BY_ID)
        attr.prog_id = id;
    else
        attr.map_id = id;
    return bpf_fd(cmd, attr, std::string(what) + " " + std::to_string(id));
}

} // namespace

BpfCall override_bpf(BpfCall call)
{
    return std::exchange(backend, call == nullptr ? kernel_bpf : call);
}

Fd map_create(const MapCreateArgs& args)
{
    bpf_attr attr{};
    attr.map_type = args.type;
    attr.key_size = args.key_size;
    attr.value_size = args.value_size;
    attr.max_entries = args.max_entries;
    attr.map_flags = args.flags;
    set_name(attr.map_name, args.name);
    if (args.btf_fd >= 0) {
        attr.btf_fd = static_cast<uint32_t>(args.btf_fd);
        attr.btf_key_type_id = args.btf_key_type_id;
        attr.btf_value_type_id = args.btf_value_type_id;
    }
    return bpf_fd(BPF_MAP_CREATE, attr, "map '" + args.name + "'");
}

Fd prog_load(const ProgLoadArgs& args)
{
    bpf_attr attr{};
    attr.prog_type = args.type;
    attr.expected_attach_type = args.expected_attach_type;
    attr.insns = ptr(args.insns.data());
    attr.insn_cnt = static_cast<uint32_t>(args.insns.size());
    attr.license = ptr(args.license.c_str());
    set_name(attr.prog_name, args.name);
    if (args.prog_btf_fd >= 0) {
        attr.prog_btf_fd = static_cast<uint32_t>(args.prog_btf_fd);
        if (!args.func_info.empty()) {
            attr.func_info = ptr(args.func_info.data());
            attr.func_info_cnt = static_cast<uint32_t>(args.func_info.size());
            attr.func_info_rec_size = sizeof(bpf_func_info);
        }
        if (!args.line_info.empty()) {
            attr.line_info = ptr(args.line_info.data());
            attr.line_info_cnt = static_cast<uint32_t>(args.line_info.size());
            attr.line_info_rec_size = sizeof(bpf_line_info);
        }
    }
    attr.attach_btf_id = args.attach_btf_id;
    if (!args.log.empty()) {
        args.log[0] = '\0';
        attr.log_buf = ptr(args.log.data());
        attr.log_size = static_cast<uint32_t>(args.log.size());
        attr.log_level = args.log_level;
    }
    return bpf_fd(BPF_PROG_LOAD, attr, "program '" + args.name + "'");
}

Fd btf_load(std::span<const std::byte> btf, std::span<char> log)
{
    bpf_attr attr{};
    attr.btf = ptr(btf.data());
    attr.btf_size = static_cast<uint32_t>(btf.size());
    if (!log.empty()) {
        log[0] = '\0';
        attr.btf_log_buf = ptr(log.data());
        attr.btf_log_size = static_cast<uint32_t>(log.size());
        attr.btf_log_level = 1;
    }
    return bpf_fd(BPF_BTF_LOAD, attr, "type information");
}

void map_update(int map_fd, const void* key, const void* value, uint64_t flags)
{
    bpf_attr attr{};
    attr.map_fd = static_cast<uint32_t>(map_fd);
    attr.key = ptr(key);
    attr.value = ptr(value);
    attr.flags = flags;
    bpf_void(BPF_MAP_UPDATE_ELEM, attr, "");
}

bool map_lookup(int map_fd, const void* key, void* value)
{
    bpf_attr attr{};
    attr.map_fd = static_cast<uint32_t>(map_fd);
    attr.key = ptr(key);
    attr.value = ptr(value);
    if (bpf(BPF_MAP_LOOKUP_ELEM, attr) == 0)
        return true;
    if (errno == ENOENT)
        return false;
    throw Error("BPF_MAP_LOOKUP_ELEM", "", errno);
}

bool map_next_key(int map_fd, const void* key, void* next_key)
{
    bpf_attr attr{};
    attr.map_fd = static_cast<uint32_t>(map_fd);
    attr.key = ptr(key);
    attr.next_key = ptr(next_key);
    if (bpf(BPF_MAP_GET_NEXT_KEY, attr) == 0)
        return true;
    if (errno == ENOENT)
        return false;
    throw Error("BPF_MAP_GET_NEXT_KEY", "", errno);
}

void obj_pin(int fd, const std::string& path)
{
    bpf_attr attr{};
    attr.bpf_fd = static_cast<uint32_t>(fd);
    attr.pathname = ptr(path.c_str());
    bpf_void(BPF_OBJ_PIN, attr, path);
}

Fd obj_get(const std::string& path)
{
    bpf_attr attr{};
    attr.pathname = ptr(path.c_str());
    return bpf_fd(BPF_OBJ_GET, attr, path);
}

void prog_attach(int prog_fd, int target_fd, uint32_t attach_type, uint32_t flags)
{
    bpf_attr attr{};
    attr.target_fd = static_cast<uint32_t>(target_fd);
    attr.attach_bpf_fd = static_cast<uint32_t>(prog_fd);
    attr.attach_type = attach_type;
    attr.attach_flags = flags;
    bpf_void(BPF_PROG_ATTACH, attr, "");
}

void prog_detach(int prog_fd, int target_fd, uint32_t attach_type)
{
    bpf_attr attr{};
    attr.target_fd = static_cast<uint32_t>(target_fd);
    attr.attach_bpf_fd = static_cast<uint32_t>(prog_fd);
    attr.attach_type = attach_type;
    bpf_void(BPF_PROG_DETACH, attr, "");
}

std::vector<uint32_t> prog_query(int target_fd, uint32_t attach_type)
{
    std::vector<uint32_t> ids(64);
    bpf_attr attr{};
    attr.query.target_fd = static_cast<uint32_t>(target_fd);
    attr.query.attach_type = attach_type;
    attr.query.prog_ids = ptr(ids.data());
    attr.query.prog_cnt = static_cast<uint32_t>(ids.size());
    bpf_void(BPF_PROG_QUERY, attr, "");
    ids.resize(std::min<size_t>(attr.query.prog_cnt, ids.size()));
    return ids;
}

Fd link_create(int prog_fd, int target_fd, uint32_t attach_type, const bpf_iter_link_info* iter_info)
{
    bpf_attr attr{};
    attr.link_create.prog_fd = static_cast<uint32_t>(prog_fd);
    attr.link_create.target_fd = static_cast<uint32_t>(target_fd);
    attr.link_create.attach_type = attach_type;
    if (iter_info != nullptr) {
        attr.link_create.iter_info = ptr(iter_info);
        attr.link_create.iter_info_len = sizeof *iter_info;
    }
    return bpf_fd(BPF_LINK_CREATE, attr, "");
}

Fd iter_create(int link_fd)
{
    bpf_attr attr{};
    attr.iter_create.link_fd = static_cast<uint32_t>(link_fd);
    return bpf_fd(BPF_ITER_CREATE, attr, "");
}

Fd raw_tracepoint_open(int prog_fd)
{
    bpf_attr attr{};
    attr.raw_tracepoint.prog_fd = static_cast<uint32_t>(prog_fd);
    return bpf_fd(BPF_RAW_TRACEPOINT_OPEN, attr, "");
}

void link_detach(int link_fd)
{
    bpf_attr attr{};
    attr.link_detach.link_fd = static_cast<uint32_t>(link_fd);
    bpf_void(BPF_LINK_DETACH, attr, "");
}

TestRunResult prog_test_run(int prog_fd, std::span<const std::byte> data)
{
    bpf_attr attr{};
    attr.test.prog_fd = static_cast<uint32_t>(prog_fd);
    attr.test.data_in = ptr(data.data());
    attr.test.data_size_in = static_cast<uint32_t>(data.size());
    attr.test.repeat = 1;
    bpf_void(BPF_PROG_TEST_RUN, attr, "");
    return {attr.test.retval, attr.test.duration};
}

bpf_prog_info prog_info(int fd)
{
    return info_by_fd<bpf_prog_info>(fd, "program");
}
bpf_map_info map_info(int fd)
{
    return info_by_fd<bpf_map_info>(fd, "map");
}
bpf_link_info link_info(int fd)
{
    return info_by_fd<bpf_link_info>(fd, "link");
}

Fd enable_stats(uint32_t type)
{
    bpf_attr attr{};
    attr.enable_stats.type = type;
    return bpf_fd(BPF_ENABLE_STATS, attr, "run statistics");
}

std::vector<uint32_t> all_prog_ids()
{
    return all_ids(BPF_PROG_GET_NEXT_ID);
}
std::vector<uint32_t> all_map_ids()
{
    return all_ids(BPF_MAP_GET_NEXT_ID);
}
std::vector<uint32_t> all_link_ids()
{
    return all_ids(BPF_LINK_GET_NEXT_ID);
}
Fd prog_fd_by_id(uint32_t id)
{
    return fd_by_id(BPF_PROG_GET_FD_BY_ID, id, "program id");
}
Fd map_fd_by_id(uint32_t id)
{
    return fd_by_id(BPF_MAP_GET_FD_BY_ID, id, "map id");
}

} // namespace sockredir::ebpf::sys
