"""common.send keeps every output tensor alive (from Python) while the stub's send runs.

python_backend's ResponseSender::Send (r24.10) releases the GIL and then prunes unrequested outputs; a
tensor whose last owner is the response would be destroyed there, without the GIL. The fake sender
below prunes the way the stub does and checks that no tensor died inside the call.
"""
import gc
import weakref

from glmtrt.triton.pymodels import common


class _Tensor:
    def __init__(self, name):
        self.name = name


class _Response:
    def __init__(self, tensors):
        self._tensors = list(tensors)

    def output_tensors(self):
        return list(self._tensors)


class _PruningSender:
    def __init__(self, requested):
        self.requested, self.died_inside, self.sent = set(requested), [], []

    def send(self, response=None, flags=0):
        if response is not None:
            refs = [weakref.ref(t) for t in response._tensors]
            response._tensors = [t for t in response._tensors if t.name in self.requested]   # the prune
            gc.collect()
            self.died_inside += [r for r in refs if r() is None]
        self.sent.append(flags)


def test_pruned_tensors_outlive_the_send_call():
    sender = _PruningSender({"output_ids"})
    resp = _Response([_Tensor("output_ids"), _Tensor("sequence_index"), _Tensor("batch_index")])
    refs = [weakref.ref(t) for t in resp._tensors]
    common.send(sender, resp)
    assert sender.died_inside == []                       # nothing was destroyed inside the GIL-less section
    gc.collect()
    assert [r() is None for r in refs] == [False, True, True]   # the pruned ones die after the call


def test_flags_only_and_error_responses():
    sender = _PruningSender(set())
    common.send(sender, None, 1)
    class _Error:                                         # e.g. an error response without output_tensors()
        _tensors = []
    common.send(sender, _Error(), 1)
    assert sender.sent == [1, 1]
