"""The dispatch decision as a pure function over plain data."""

from __future__ import annotations

from stablequeue_coordinator.dispatch.policy import (
    JobView,
    ServerView,
    choose_server,
    model_matches,
    plan,
)


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


def test_an_sd_server_never_gets_a_job_for_another_model() -> None:
    turbo = ServerView("cpp", "sdcpp", up=True, loaded_model="sd_xl_turbo_1.0_fp16.safetensors")
    servers = [turbo, forge("f", running=1)]
    alias, reason = choose_server([turbo], JobView("j", "any", model="sd_xl_base_1.0"))
    assert alias is None and reason == "cpp serves only sd_xl_turbo_1.0_fp16.safetensors"
    # With a busy Forge server too, the job waits for Forge, not for the sd-server.
    alias, reason = choose_server(servers, JobView("j", "any", model="sd_xl_base_1.0"))
    assert alias is None and reason == "waiting for a free slot on f"
    assert choose_server(servers, JobView("j", "any", model="sd_xl_turbo_1.0_fp16")) == ("cpp", "")
    assert choose_server(servers, JobView("j", "any")) == ("cpp", "")  # no model named: any
    # Forge switches checkpoints per request: a model mismatch only lowers its preference.
    assert choose_server([forge("f")], JobView("j", "any", model="sd_xl_base_1.0")) == ("f", "")


def test_a_node_model_answers_to_its_key_and_to_the_file_it_loads() -> None:
    node = ServerView("gpu:sd15", "sdcpp", up=True, loaded_model="sd15",
                      model_names=("/models/v1-5-pruned.safetensors",))  # fmt: skip
    for wanted in ("sd15", "v1-5-pruned", "v1-5-pruned.safetensors"):
        assert choose_server([node], JobView("j", "sdcpp", model=wanted)) == ("gpu:sd15", "")
    alias, reason = choose_server([node], JobView("j", "sdcpp", model="sdxl"))
    assert alias is None and reason == "gpu:sd15 serves only sd15"


def test_a_node_model_without_the_jobs_loras_is_passed_over() -> None:
    def node(alias: str, *loras: str) -> ServerView:
        return ServerView(alias, "sdcpp", up=True, loaded_model="sd15", loras=loras)

    bare, styled = node("a:sd15"), node("b:sd15", "styles/Ink.safetensors")
    job = JobView("j", "sdcpp", model="sd15", loras=("ink",))
    assert choose_server([bare, styled], job) == ("b:sd15", "")
    alias, reason = choose_server([bare], job)
    assert alias is None and reason == "a:sd15 does not have LoRA ink"
    # Servers that report no LoRAs (None) and LoRAs named by hash are not judged here.
    assert choose_server([ServerView("c", "sdcpp", up=True)], job) == ("c", "")
    by_hash = JobView("j", "sdcpp", model="sd15", loras=("a1b2c3d4e5f6",))
    assert choose_server([bare], by_hash) == ("a:sd15", "")


def test_a_round_places_only_as_many_alike_jobs_as_could_start_or_wait_first() -> None:
    """Between the rounds that tell waiting jobs why, a round looks at no more jobs of
    one kind than the free slots could take, and one more (the first to wait)."""
    from stablequeue_coordinator.dispatch.dispatcher import first_alike

    def row(job: str, model: str, target: str = "") -> tuple[object, ...]:
        return (job, "forge", target, model, (), ())

    rows = [row(f"a{i}", "sd15") for i in range(5)] + [
        row("x1", "sdxl"), row("b1", "sd15", "gpu-2"), row("x2", "sdxl"), row("x3", "sdxl"),
    ]  # fmt: skip
    kept = first_alike(rows, 2)  # type: ignore[arg-type]
    assert [r[0] for r in kept] == ["a0", "a1", "x1", "b1", "x2"]
