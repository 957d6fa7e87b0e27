"""The dispatch decision as a pure function over plain data."""

from __future__ import annotations

from coordinator.dispatch.policy import JobView, ServerView, choose_server, model_matches, plan


def forge(alias: str, **kw: object) -> ServerView:
    return ServerView(**{"alias": alias, "kind": "forge", "up": True, **kw})  # type: ignore[arg-type]


def test_prefers_the_server_with_the_wanted_model_loaded() -> None:
    servers = [
        forge("a", loaded_model="sd15.safetensors [aaaaaaaaaa]"),
        forge("b", loaded_model="sd_xl_base_1.0.safetensors [31e35c80fc]"),
    ]
    assert choose_server(servers, JobView("j", "forge", model="sd_xl_base_1.0")) == ("b", "")
    assert choose_server(servers, JobView("j", "forge", model="31e35c80fc")) == ("b", "")
    assert choose_server(servers, JobView("j", "forge", model="other")) == ("a", "")


def test_kind_health_enabled_paused_and_target_are_respected() -> None:
    servers = [
        forge("down", up=False, down_reason="connection refused"),
        forge("off", enabled=False),
        forge("paused", paused=True),
        ServerView("comfy", "comfyui", up=True),
    ]
    alias, reason = choose_server(servers, JobView("j", "forge"))
    assert alias is None
    assert "down: connection refused" in reason and "disabled" in reason and "paused" in reason
    assert choose_server(servers, JobView("j", "comfyui")) == ("comfy", "")
    assert choose_server(servers, JobView("j", "any")) == ("comfy", "")
    assert choose_server(servers, JobView("j", "any", target="ghost"))[1] == (
        "target server ghost is not registered"
    )


def test_plan_fills_free_slots_in_queue_order() -> None:
    servers = [forge("a", capacity=2), forge("b", running=1, capacity=1)]
    jobs = [JobView(str(i), "forge") for i in range(4)]
    decided = plan(servers, jobs)
    assert decided.assignments == [("0", "a"), ("1", "a")]
    assert decided.waiting == {
        "2": "waiting for a free slot on a, b",
        "3": "waiting for a free slot on a, b",
    }


def test_model_matching_by_name_file_and_hash() -> None:
    title = "SDXL/sd_xl_base_1.0.safetensors [31e35c80fc]"
    assert model_matches(title, "sd_xl_base_1.0.safetensors")
    assert model_matches(title, "SD_XL_BASE_1.0")
    assert model_matches(title, "31E35C80FC")
    assert not model_matches(title, "sd15")
    assert not model_matches("", "x")
