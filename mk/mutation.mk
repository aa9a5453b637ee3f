# Mutation testing (mutmut) over the relay's signing/render/delivery and talker's limiter and admin auth.
# Included from the root Makefile. Not part of `make test`: tens of minutes on two cores. Prints the share of
# mutants killed per module and in total, and fails below the goal (85 %). See devtools/mutation.py.
MUTATION_ARGS ?=

.PHONY: mutation

## mutation: mutmut run per suite (staged under .cache/mutation/), killed share per module and total
mutation: install
	$(VPY) -m pip install -q --require-hashes -r locks/mutation.txt
	$(VPY) -m devtools.mutation $(MUTATION_ARGS)
