// StableQueue: the "StableQueue tab" link in the message under the Queue buttons.
// Forge/A1111 load every javascript/*.js of an extension into the page.
function stablequeueShowTab() {
    const root = typeof gradioApp === "function" ? gradioApp() : document;
    // gradio 4+ marks tab buttons role=tab (and keeps hidden copies for its overflow
    // menu: take a shown one); gradio 3 has plain buttons in .tab-nav.
    const candidates = [
        ...root.querySelectorAll("#tabs [role=tab]"),
        ...root.querySelectorAll("#tabs .tab-nav button"),
    ];
    const tab = candidates.find(
        (b) => b.textContent.trim() === "StableQueue" && b.offsetParent !== null
    );
    if (tab) tab.click();
    return false;
}
