"""``convoy.WorkflowNotFound`` is public: a caller can catch a workflow this process
cannot load, and read which one it was."""

from __future__ import annotations

import pytest

import convoy


@pytest.mark.parametrize("ref", ["no_such_workflow_name", "__main__:refund"])
def test_a_workflow_that_cannot_be_loaded_raises_the_public_error_naming_it(ref: str) -> None:
    with pytest.raises(convoy.WorkflowNotFound) as caught:
        convoy.load_workflow(ref)
    assert caught.value.workflow == ref
    assert isinstance(caught.value, convoy.UserError)
    assert "WorkflowNotFound" in convoy.__all__
