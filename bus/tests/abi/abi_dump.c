/* Prints every constant and layout fact of bus.bpf.h's ABI part, one
 * "NAME VALUE" per line, for abi_agreement.rs to compare with abi.rs. */
#define PRISM_BUS_ABI_ONLY
#include <prism/bus.bpf.h>
#include <stddef.h>
#include <stdio.h>

#define SHOW(name) printf("%s %llu\n", #name, (unsigned long long)(name))
#define SHOW_STR(name) printf("%s %s\n", #name, name)
#define SHOW_FIELD(type, field)                                                \
	printf("offsetof(%s.%s) %zu\nsizeof(%s.%s) %zu\n", #type, #field,     \
	       offsetof(struct type, field), #type, #field,                    \
	       sizeof(((struct type *)0)->field))

int main(void)
{
	SHOW(PRISM_ABI_VERSION);
	SHOW_STR(PRISM_PIN_DIR);
	SHOW_STR(PRISM_IDENTITY_MAP_NAME);
	SHOW_STR(PRISM_META_MAP_NAME);
	SHOW(PRISM_DEFAULT_MAX_ENTRIES);
	SHOW(PRISM_BPF_F_NO_PREALLOC);
	SHOW(PRISM_BPF_F_RDONLY_PROG);
	SHOW(PRISM_IDENTITY_MAP_FLAGS);
	SHOW(PRISM_META_MAP_FLAGS);
	SHOW(PRISM_IDENTITY_MASK);
	SHOW(PRISM_MIN_DYNAMIC_IDENTITY);
	SHOW(PRISM_ID_UNKNOWN);
	SHOW(PRISM_ID_HOST);
	SHOW(PRISM_ID_WORLD);
	SHOW(PRISM_ID_UNMANAGED);
	SHOW(PRISM_ID_HEALTH);
	SHOW(PRISM_ID_INIT);
	SHOW(PRISM_ID_REMOTE_NODE);
	SHOW(PRISM_ID_KUBE_APISERVER);
	SHOW(PRISM_ID_INGRESS);
	SHOW(PRISM_ANCESTOR_WALK_MAX);
	SHOW(PRISM_FACET_NET);
	SHOW(PRISM_FACET_SCHED);
	SHOW(PRISM_FACET_OBSERVE);
	SHOW(PRISM_FACET_MASK);
	SHOW(PRISM_CLASS_SHIFT);
	SHOW(PRISM_CLASS_MASK);
	SHOW(PRISM_CLASS_UNSET);
	SHOW(PRISM_CLASS_CRITICAL);
	SHOW(PRISM_CLASS_NORMAL);
	SHOW(PRISM_CLASS_BATCH);
	SHOW(PRISM_WEIGHT_SHIFT);
	SHOW(PRISM_WEIGHT_MASK);
	SHOW(PRISM_WEIGHT_MAX);
	SHOW(PRISM_WEIGHT_NEUTRAL);
	SHOW(PRISM_FLAGS_DEFINED_MASK);
	printf("sizeof(prism_identity) %zu\n", sizeof(struct prism_identity));
	SHOW_FIELD(prism_identity, identity);
	SHOW_FIELD(prism_identity, flags);
	SHOW_FIELD(prism_identity, label_hash);
	SHOW_FIELD(prism_identity, updated_ns);
	printf("sizeof(prism_meta) %zu\n", sizeof(struct prism_meta));
	SHOW_FIELD(prism_meta, abi_version);
	SHOW_FIELD(prism_meta, reserved);
	SHOW_FIELD(prism_meta, generation);
	SHOW_FIELD(prism_meta, entries);
	return 0;
}
