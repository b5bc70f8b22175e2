# What `make test` shows of the QEMU tests' verbose log (the whole log is in
# out/qa-test.log): each test's start and result, the ready and error lines
# of the VMs' consoles, and everything a failure says — the failing subtest,
# the test's own messages with their continuation lines, and, from the
# harness, the QEMU command line and the work folder it kept.
/^(=== RUN|--- |PASS|FAIL|ok|panic)/ || /etoile: (ready|error)/ || /^[ \t]+--- / { print; fflush(); more = 0; next }
/^[ \t]+[A-Za-z0-9_]+_test\.go:[0-9]+:/ || /work folder kept/ { print; fflush(); more = 1; next }
/QEMU command line:/ { print; fflush(); more = 1; next }
more && /^        / { print; fflush(); next }
{ more = 0 }
