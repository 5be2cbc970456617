"""Invariant: the real RAG service (MiniLM int8 ONNX embeddings) returns the
right document first for a question about it, over a folder of distinct
documents and over the default docs/ folder (the user guide); Reindex picks
up new documents, and a PDF dropped into the folder is found without one,
citing its page; a restart reloads the persisted index instead of
re-embedding; each malformed Search gets INVALID_ARGUMENT saying what was wrong."""
from __future__ import annotations

import grpc
import pytest

from common.stubs import common_pb2, rag_pb2, rag_pb2_grpc
from tests.procs import ROOT, running

pytestmark = pytest.mark.slow

DOCS = {
    "espresso.md": """# Making espresso at home

## Grinding and dosing

Grind about eighteen grams of fresh coffee beans very fine, like powdered sugar.
Spread the grounds evenly in the portafilter basket and tamp them with firm,
level pressure. An uneven tamp lets water channel through the weak spots and
the shot tastes sour and thin.

## Pulling the shot

Lock the portafilter into the group head and start the pump at once. A good
shot takes twenty-five to thirty seconds and yields about thirty-six grams of
liquid with a thick layer of golden crema. If it runs faster, grind finer; if
it chokes the machine, grind coarser.
""",
    "bicycle.md": """# Fixing a flat bicycle tyre

Shift to the smallest sprocket, open the brake quick release and take the wheel
out of the frame. Use two tyre levers to pry one side of the tyre off the rim
and pull out the inner tube.

Pump a little air into the tube and listen for the hiss to find the puncture.
Roughen the area with sandpaper, spread a thin layer of rubber cement, wait a
minute until it is tacky and press the patch on firmly. Check the inside of the
tyre for the thorn or glass that caused the hole before you refit it, then
inflate to the pressure printed on the sidewall.
""",
    "tomatoes.txt": """Growing tomatoes

Tomatoes need at least six hours of direct sun a day and rich, well drained soil.
Plant seedlings deep, burying two thirds of the stem, because new roots grow
from the buried part. Water at the base of the plant early in the morning and
keep the leaves dry to prevent blight. Pinch out the side shoots that grow in
the joints between the stem and the branches, and tie the main stem to a stake
as it grows. Pick the fruit when it is fully coloured and slightly soft.
""",
    "passwords.md": """# Choosing safe passwords

Use a different password for every account so that one leaked password does not
open all the others. A password manager generates long random passwords and
remembers them for you; you only need to remember one strong passphrase made of
several unrelated words. Turn on two-factor authentication wherever it is
offered, preferably with an authenticator app or a hardware security key rather
than text messages.
""",
}

NEW_DOC = ("sourdough.md", """# Feeding a sourdough starter

Discard half of the starter every day and feed it with equal weights of flour
and lukewarm water. Keep the jar loosely covered at room temperature; the
starter is ready for baking when it doubles in size within six hours of a
feeding and smells pleasantly sour, with bubbles all through it.
""")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("rag")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    return docs, root / "index"


@pytest.fixture(scope="module")
def rag(folders):
    docs, index = folders
    with running("services.rag", "RAG_", {"RAG_DOCS_DIR": str(docs), "RAG_INDEX_DIR": str(index)}) as svc:
        yield svc


def stub(ch) -> rag_pb2_grpc.RetrieverStub:
    return rag_pb2_grpc.RetrieverStub(ch)


async def search(addr: str, query: str, k: int = 3, min_score: float = 0.0) -> rag_pb2.SearchResponse:
    async with grpc.aio.insecure_channel(addr) as ch:
        return await stub(ch).Search(rag_pb2.SearchRequest(query=query, k=k, min_score=min_score),
                                     timeout=60)


@pytest.mark.parametrize("question, source", [
    ("How do I repair a puncture on my bike?", "bicycle.md"),
    ("Why does my coffee taste sour and watery?", "espresso.md"),
    ("When should I water my vegetable plants?", "tomatoes.txt"),
    ("How can I keep my online accounts secure?", "passwords.md"),
])
async def test_a_question_about_a_document_returns_it_first(rag, question, source):
    r = await search(rag.address, question, k=4)
    assert r.passages, "no passages"
    top = r.passages[0]
    assert top.source == source, [(p.source, round(p.score, 3)) for p in r.passages]
    assert top.text.strip() and top.title
    scores = [p.score for p in r.passages]
    assert scores == sorted(scores, reverse=True)
    assert -1.0 <= scores[-1] <= scores[0] <= 1.0
    assert top.score > scores[-1]
    assert r.latency_ms > 0


async def test_titles_are_the_nearest_heading(rag):
    r = await search(rag.address, "how long should an espresso shot take to pull", k=1)
    assert (r.passages[0].source, r.passages[0].title) == ("espresso.md", "Pulling the shot")


async def test_min_score_drops_weak_passages(rag):
    everything = await search(rag.address, "flat tyre patch", k=10)
    strong = await search(rag.address, "flat tyre patch", k=10, min_score=0.3)
    assert strong.passages and all(p.score >= 0.3 for p in strong.passages)
    assert len(strong.passages) < len(everything.passages)


@pytest.mark.parametrize("req, needle", [
    (rag_pb2.SearchRequest(query=""), "query is empty"),
    (rag_pb2.SearchRequest(query="   "), "query is empty"),
    (rag_pb2.SearchRequest(query="why " * 400), "query is 1599 characters; the limit is 1000"),
    (rag_pb2.SearchRequest(query="coffee", k=21), "k 21 is out of range 1..20"),
    (rag_pb2.SearchRequest(query="coffee", k=-2), "k -2 is out of range 1..20"),
    (rag_pb2.SearchRequest(query="coffee", min_score=3), "min_score 3.0 is out of range [-1, 1]"),
])
async def test_malformed_search_is_invalid_argument(rag, req, needle):
    async with grpc.aio.insecure_channel(rag.address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub(ch).Search(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in err.value.details()
        # The service is unaffected.
        ok = await stub(ch).Search(rag_pb2.SearchRequest(query="espresso crema"), timeout=30)
        assert ok.passages[0].source == "espresso.md"


async def test_reindex_picks_up_a_new_document(rag, folders):
    docs, _ = folders
    name, text = NEW_DOC
    before = await search(rag.address, "How often do I feed my sourdough starter?", k=5)
    assert all(p.source != name for p in before.passages)
    (docs / name).write_text(text)
    async with grpc.aio.insecure_channel(rag.address) as ch:
        r = await stub(ch).Reindex(rag_pb2.ReindexRequest(), timeout=300)
        status = await stub(ch).GetStatus(common_pb2.StatusRequest())
    assert r.documents == len(DOCS) + 1 and r.chunks >= r.documents and r.duration_ms > 0
    after = await search(rag.address, "How often do I feed my sourdough starter?", k=5)
    assert after.passages[0].source == name
    assert status.service == "rag" and status.completed_streams >= 2 and status.active_streams == 0


async def test_a_pdf_dropped_into_the_folder_is_found_without_a_restart(rag, folders):
    """The watcher (RAG_WATCH_INTERVAL_S, 2 s) picks up a new PDF; its passage
    cites the page it is on."""
    import asyncio
    import time

    from tests.unit.test_rag_documents import write_pdf

    docs, _ = folders
    write_pdf(docs / "kettle.pdf", ["Fill the kettle to the line.",
                                    "Descale the kettle with vinegar every two months."])
    question = "How often should I descale my kettle?"
    deadline = time.monotonic() + 60
    while True:
        r = await search(rag.address, question, k=1)
        if r.passages and r.passages[0].source.startswith("kettle.pdf"):
            break
        assert time.monotonic() < deadline, [p.source for p in r.passages]
        await asyncio.sleep(0.5)
    assert r.passages[0].source == "kettle.pdf#page=2", r.passages[0]
    (docs / "kettle.pdf").unlink()                 # gone again, for the tests after this one
    while any(p.source.startswith("kettle.pdf") for p in (await search(rag.address, question, k=5)).passages):
        assert time.monotonic() < deadline + 30
        await asyncio.sleep(0.5)


def test_a_restart_reloads_the_persisted_index(folders, rag):
    docs, index = folders
    assert (index / "vectors.npy").is_file() and (index / "meta.json").is_file()
    with running("services.rag", "RAG_", {"RAG_DOCS_DIR": str(docs), "RAG_INDEX_DIR": str(index)}) as svc:
        log = svc.log()
    assert "reloaded from disk, 0 embedded" in log, log


def test_the_default_docs_folder_answers_about_the_user_guide(tmp_path):
    import asyncio

    # A private index folder: the shared var/rag of `make run` stays untouched.
    with running("services.rag", "RAG_", {"RAG_INDEX_DIR": str(tmp_path / "index")}) as svc:
        r = asyncio.run(search(svc.address, "How do I interrupt the assistant while it is speaking?"))
        r2 = asyncio.run(search(svc.address, "The browser blocked my microphone, what do I do?"))
    assert r.passages[0].source == "user-guide.md", [(p.source, p.title) for p in r.passages]
    assert "interrupt" in r.passages[0].title.lower()
    assert r2.passages[0].source == "user-guide.md" and "microphone" in r2.passages[0].title.lower()
    assert (ROOT / "docs" / "user-guide.md").is_file()
