// Xinqiao console pages' JSON API client, shared by console.js and supervisor.js (each page loads this
// file first). It holds no words and names no API path: each page passes its own table of paths.
// The CSRF token is kept in memory only and sent on every POST; a call refused with `csrf` (a stale token:
// another tab signed in again) fetches the current token from `me` and is tried once more; a call refused
// with `signed_out` tells the page through onSignedOut.
"use strict";

window.XinqiaoApi = (() => {
  class ApiError extends Error {
    constructor(code, status) {
      super(code);
      this.code = code;
      this.status = status;
    }
  }

  // api: {name: [method, path with "{id}"]}, and must name `me` (its answer carries the token).
  // onSignedOut(): a call was refused as signed out. onResponse(response): every answer, before its body.
  // signIn: names of calls whose refusals are the caller's to show (a wrong password), so neither retried
  // nor taken as signing out.
  function client({ api, onSignedOut = () => {}, onResponse = () => {}, signIn = [] }) {
    let csrf = null;
    const exempt = new Set(signIn);

    async function send(name, id, body, query, retried) {
      const [method, template] = api[name];
      let path = template.replace("{id}", encodeURIComponent(String(id)));
      if (query) path += `?${new URLSearchParams(query)}`;
      const init = { method, credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } };
      if (method !== "GET") {
        init.headers["Content-Type"] = "application/json";
        if (csrf) init.headers["X-CSRF-Token"] = csrf;
        init.body = JSON.stringify(body || {});
      }
      let response;
      try {
        response = await fetch(path, init);
      } catch (err) {
        throw new ApiError("network", 0);
      }
      onResponse(response);
      let data = null;
      try { data = await response.json(); } catch (err) { data = null; }
      if (response.ok) return data || {};
      const code = data && typeof data.error === "string" ? data.error : `http_${response.status}`;
      if (!exempt.has(name)) {
        // The server checks the token before doing anything, so the first attempt changed nothing.
        if (code === "csrf" && !retried && (await refreshToken())) return send(name, id, body, query, true);
        if (code === "signed_out") onSignedOut();
      }
      throw new ApiError(code, response.status);
    }

    // Fetches the current token from `me`; false if that fails (a signed-out answer also calls onSignedOut).
    async function refreshToken() {
      try {
        csrf = (await send("me", null, null, null, true)).csrf;
        return true;
      } catch (err) {
        return false;
      }
    }

    return {
      call: (name, id, body, query) => send(name, id, body, query, false),
      refreshToken,
      setToken(token) { csrf = token || null; },
      token: () => csrf,
    };
  }

  return Object.freeze({ ApiError, client });
})();
