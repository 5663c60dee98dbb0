/* A BPF object for the BTF tests, parsed and never loaded: BTF-defined maps in ".maps" (libbpf's style), global data
 * in .bss, .data and .rodata, a struct with bitfields, an enum, a float, decl and type tags, a global subprogram, and
 * CO-RE relocations against a local struct marked preserve_access_index. */
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
/* libbpf's bpf_helpers.h encodes map attributes in types: an int in an array's size, a type in a pointer's target. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]
#define PIN_BY_NAME 1 /* libbpf's LIBBPF_PIN_BY_NAME */

/* The kernel's enum bpf_field_info_kind, bpf_type_info_kind and bpf_enum_value_kind (clang's builtins take them). */
#define FIELD_EXISTS 2
#define TYPE_ID_LOCAL 0
#define TYPE_EXISTS 0
#define ENUMVAL_EXISTS 0

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;

struct flow_key {
	__u32 addr;
	__u16 port;
	__u8 proto;
};

enum flow_state { FLOW_NEW = 1, FLOW_OPEN = 2, FLOW_CLOSED = -1 };

struct flow_value {
	__u64 packets;
	__u32 state : 3;
	__u32 urgent : 1;
	__u32 window : 20;
	enum flow_state last;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
	__uint(pinning, PIN_BY_NAME);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, 4);
	__uint(value_size, 8);
	__uint(map_flags, BPF_F_RDONLY_PROG);
} stats SEC(".maps");

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__uint(key_size, 4);
	__array(values, struct inner_map);
} outer SEC(".maps");

__u64 packets_seen = 0;                           /* .bss */
__u32 config_port = 8080;                          /* .data */
float ratio = 0.5f;                                /* .data, a FLOAT */
int tagged __attribute__((btf_decl_tag("btf_test_tag"))) = 1; /* .data, a DECL_TAG */
volatile const __u32 config_flags = 3;             /* .rodata */
int __attribute__((btf_type_tag("user"))) *user_ptr; /* .bss, a TYPE_TAG */

/* Read through CO-RE: its offsets are relocated against the target's BTF, not compiled in. */
struct core_thing {
	int a;
	int b;
	unsigned int bits : 4;
} __attribute__((preserve_access_index));

__attribute__((noinline)) int scale(int x)
{
	return x * 2;
}

SEC("socket")
int read_flows(struct __sk_buff *skb)
{
	struct flow_key key = {};
	struct flow_value *v;
	struct core_thing *t;

	key.port = skb->local_port;
	v = bpf_map_lookup_elem(&flows, &key);
	if (!v)
		return 0;
	t = (void *)v;
	packets_seen++;
	return t->b + __builtin_preserve_field_info(t->bits, FIELD_EXISTS) + __builtin_btf_type_id(*t, TYPE_ID_LOCAL) +
	       __builtin_preserve_type_info(*t, TYPE_EXISTS) +
	       __builtin_preserve_enum_value(*(enum flow_state *)FLOW_OPEN, ENUMVAL_EXISTS) +
	       scale(config_port + config_flags);
}

char _license[] SEC("license") = "GPL";
