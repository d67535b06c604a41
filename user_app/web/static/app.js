// RingFS web page: what JavaScript adds to the server-rendered pages. Without it, browsing and
// downloading still work; with it: drag-and-drop and picked uploads with a progress bar per file
// (each file streamed with one PUT /web/upload/<path>), "load more" in place, and confirmations.
"use strict";

const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;
const PARALLEL_UPLOADS = 2;

function encodePath(path) {
  return path.split("/").map(encodeURIComponent).join("/");
}

// --- uploads ---------------------------------------------------------------------------------------
function uploadOne(folder, item) {
  const li = document.createElement("li");
  li.className = "upload";
  li.dataset.name = item.path;
  li.innerHTML = '<span class="upload-name"></span> <progress max="100" value="0"></progress> <span class="status">waiting</span>';
  li.querySelector(".upload-name").textContent = item.path;
  document.getElementById("uploads").appendChild(li);
  const bar = li.querySelector("progress");
  const status = li.querySelector(".status");
  return () => new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    const target = (folder ? folder + "/" : "") + item.path;
    xhr.open("PUT", "/web/upload/" + encodePath(target));
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        bar.value = Math.floor((100 * e.loaded) / e.total);
        status.textContent = bar.value + " %";
      }
    };
    xhr.onload = () => {
      if (xhr.status === 201) {
        bar.value = 100;
        status.textContent = "done";
        resolve(true);
      } else {
        let message = xhr.statusText;
        try { message = JSON.parse(xhr.responseText).error; } catch (_) { /* not JSON */ }
        status.textContent = "error " + xhr.status + ": " + message;
        li.classList.add("failed");
        resolve(false);
      }
    };
    xhr.onerror = () => { status.textContent = "error: the connection failed"; li.classList.add("failed"); resolve(false); };
    status.textContent = "0 %";
    xhr.send(item.file);
  });
}

async function uploadAll(items) {
  const zone = document.getElementById("upload-zone");
  const folder = zone.dataset.folder;
  const jobs = items.map((item) => uploadOne(folder, item));
  let next = 0, ok = true;
  async function worker() {
    while (next < jobs.length) {
      const job = jobs[next++];
      ok = (await job()) && ok;
    }
  }
  await Promise.all(Array.from({ length: PARALLEL_UPLOADS }, worker));
  if (ok) location.reload();
}

// Files of a dropped folder, with their paths relative to the drop (webkitGetAsEntry, all browsers).
function readEntry(entry, prefix) {
  return new Promise((resolve) => {
    if (entry.isFile) {
      entry.file((file) => resolve([{ path: prefix + file.name, file }]), () => resolve([]));
      return;
    }
    const reader = entry.createReader();
    const all = [];
    const more = () => reader.readEntries(async (batch) => {
      if (!batch.length) {
        const nested = await Promise.all(all.map((e) => readEntry(e, prefix + entry.name + "/")));
        resolve(nested.flat());
        return;
      }
      all.push(...batch);
      more();
    }, () => resolve([]));
    more();
  });
}

async function droppedItems(dataTransfer) {
  const entries = Array.from(dataTransfer.items || [])
    .map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null)).filter(Boolean);
  if (entries.length) {
    return (await Promise.all(entries.map((e) => readEntry(e, "")))).flat();
  }
  return Array.from(dataTransfer.files).map((file) => ({ path: file.name, file }));
}

function setUpUploads() {
  const zone = document.getElementById("upload-zone");
  if (!zone) return;
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    uploadAll(await droppedItems(e.dataTransfer));
  });
  for (const id of ["file-input", "folder-input"]) {
    const input = document.getElementById(id);
    input.addEventListener("change", () => {
      uploadAll(Array.from(input.files).map((file) => ({ path: file.webkitRelativePath || file.name, file })));
    });
  }
}

// --- load more -------------------------------------------------------------------------------------
function setUpLoadMore() {
  document.addEventListener("click", async (e) => {
    const link = e.target.closest("#load-more");
    if (!link) return;
    e.preventDefault();
    const response = await fetch(link.href, { credentials: "same-origin" });
    if (!response.ok) { location.href = link.href; return; }
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const rows = page.querySelectorAll("#entries tbody tr.entry");
    document.querySelector("#entries tbody").append(...rows);
    const newer = page.getElementById("load-more");
    if (newer) { link.href = newer.href; link.textContent = newer.textContent; } else { link.closest("p").remove(); }
  });
}

// --- confirmations (key deletion: it cannot be undone, unlike a delete to the trash) ----------------
function setUpConfirmations() {
  document.addEventListener("submit", (e) => {
    const button = e.submitter || e.target.querySelector("[data-confirm]");
    if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) e.preventDefault();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpUploads();
  setUpLoadMore();
  setUpConfirmations();
});
