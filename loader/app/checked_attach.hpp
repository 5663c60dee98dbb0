// attach behind check's verdict: where sockredir cannot run, one line that says why instead of the first failed step;
// where it can, with the live self-tests run beside it.
#pragma once

#include "loader/app/attach.hpp"

namespace sockredir::app {

// attach, refused with check's verdict on a kernel (or for a caller) that cannot run sockredir: one line instead of
// whichever step failed first. Where that is to be expected (not root, a kernel older than 5.15) the probes run
// first and the refusal comes before anything is touched. Elsewhere they run only once something has failed, so a
// capable kernel pays nothing for them (they cost more than the attach itself); attach takes down whatever a failed
// step had created, so that refusal too leaves the system as it was.
//
// The live self-tests that attach nothing (SelfTestScope::Cheap) run meanwhile in a child of their own, so that they
// add to attach's time only what they take beyond it. For a new attachment their findings come back in
// result.defects and are stored in its config (record_defects); one found in place keeps what its attach stored.
AttachResult attach_or_verdict(const AttachOptions& options);

} // namespace sockredir::app
