// Swagger UI (served from the swagger-ui-py package's files) on the learned API. Its first
// server is the proxy; "try it out" on it goes through /admin/try/ on this origin, which sends
// the request on to the proxy (the page cannot call the proxy's port itself: another origin).
"use strict";
window.addEventListener("DOMContentLoaded", async () => {
  const doc = await (await fetch("/admin/openapi.json", { credentials: "same-origin" })).json();
  const proxy = new URL(doc.servers[0].url).origin;
  window.ui = SwaggerUIBundle({
    spec: doc,
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: (req) => {
      const u = new URL(req.url, location.href);
      if (u.origin === proxy) req.url = "/admin/try" + u.pathname + u.search;
      return req;
    },
  });
});
