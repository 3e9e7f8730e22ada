// Renders /api/v1/openapi.json with plain DOM APIs (no inline code: the page runs under
// `script-src 'self'; style-src 'self'`).
(function () {
  "use strict";

  var METHODS = ["get", "post", "put", "patch", "delete"];

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function resolve(spec, schema) {
    if (schema && schema.$ref) {
      var name = schema.$ref.split("/").pop();
      return (spec.components && spec.components.schemas && spec.components.schemas[name]) || {};
    }
    return schema || {};
  }

  function authText(spec, op) {
    var sec = op.security;
    if (!sec || sec.length === 0) {
      return "public";
    }
    return sec
      .map(function (req) {
        var names = Object.keys(req);
        return names.length === 0 ? "anonymous" : names.join(" + ");
      })
      .join(" or ");
  }

  function bodyTable(spec, op) {
    var content = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
    if (!content) {
      return null;
    }
    var schema = resolve(spec, content.schema);
    var required = schema.required || [];
    var rows = Object.keys(schema.properties || {}).map(function (name) {
      var p = resolve(spec, schema.properties[name]);
      return el("tr", {}, [
        el("td", {}, [el("code", {}, [name])]),
        el("td", {}, [String(p.type || "any")]),
        el("td", {}, [required.indexOf(name) >= 0 ? "yes" : "no"]),
        el("td", {}, [p.description || ""]),
      ]);
    });
    return el("table", {}, [
      el("thead", {}, [el("tr", {}, [el("th", {}, ["field"]), el("th", {}, ["type"]), el("th", {}, ["required"]), el("th", {}, ["description"])])]),
      el("tbody", {}, rows),
    ]);
  }

  function responsesList(op) {
    var items = Object.keys(op.responses || {}).map(function (code) {
      return el("li", {}, [el("code", {}, [code]), " ", op.responses[code].description || ""]);
    });
    return el("ul", {}, items);
  }

  function renderOp(spec, path, method, op) {
    var body = el("div", { class: "op-body" }, [
      el("p", { class: "auth" }, [el("strong", {}, ["Auth: "]), authText(spec, op)]),
    ]);
    if (op.description) {
      body.appendChild(el("p", {}, [op.description]));
    }
    var table = bodyTable(spec, op);
    if (table) {
      body.appendChild(el("h4", {}, ["Request body (application/json)"]));
      body.appendChild(table);
    }
    body.appendChild(el("h4", {}, ["Responses"]));
    body.appendChild(responsesList(op));
    return el("details", { class: "op" }, [
      el("summary", {}, [
        el("span", { class: "method m-" + method }, [method.toUpperCase()]),
        el("span", { class: "path" }, [path]),
        el("span", { class: "summary" }, [op.summary || ""]),
      ]),
      body,
    ]);
  }

  function render(spec) {
    var info = spec.info || {};
    document.getElementById("title").textContent = (info.title || "API") + " " + (info.version || "");
    var subtitle = document.getElementById("subtitle");
    subtitle.textContent = "OpenAPI " + spec.openapi + " — " + (info.description || "") + " ";
    subtitle.appendChild(el("a", { href: "/api/v1/openapi.json" }, ["raw JSON"]));

    var groups = {};
    var order = (spec.tags || []).map(function (t) { return t.name; });
    Object.keys(spec.paths || {}).forEach(function (path) {
      var item = spec.paths[path];
      METHODS.forEach(function (method) {
        var op = item[method];
        if (!op) {
          return;
        }
        var tag = (op.tags && op.tags[0]) || "default";
        if (order.indexOf(tag) < 0) {
          order.push(tag);
        }
        (groups[tag] = groups[tag] || []).push([path, method, op]);
      });
    });

    var nav = document.getElementById("tags");
    var main = document.getElementById("operations");
    order.forEach(function (tag) {
      var ops = groups[tag];
      if (!ops) {
        return;
      }
      ops.sort(function (a, b) {
        return a[0] === b[0] ? METHODS.indexOf(a[1]) - METHODS.indexOf(b[1]) : a[0] < b[0] ? -1 : 1;
      });
      nav.appendChild(el("a", { href: "#tag-" + tag }, [tag]));
      var section = el("section", { class: "tag", id: "tag-" + tag }, [el("h2", {}, [tag])]);
      ops.forEach(function (o) {
        section.appendChild(renderOp(spec, o[0], o[1], o[2]));
      });
      main.appendChild(section);
    });
  }

  function start() {
    fetch("/api/v1/openapi.json", { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (res) {
        if (!res.ok) {
          throw new Error("HTTP " + res.status);
        }
        return res.json();
      })
      .then(render)
      .catch(function (err) {
        var subtitle = document.getElementById("subtitle");
        subtitle.textContent = "Could not load the OpenAPI document: " + err.message;
        subtitle.className = "error";
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
