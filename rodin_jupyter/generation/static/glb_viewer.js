/* rodin GLB viewer: dependency-free glTF 2.0 binary (.glb) viewer.
 * WebGL 1 renderer with a Canvas2D (painter's algorithm) fallback.
 * Defines window.rodinGlbView(canvas, base64Glb[, opts]) once per page. */
(function () {
  'use strict';
  if (typeof window === 'undefined' || typeof window.rodinGlbView === 'function') return;

  const BG = [0.96, 0.96, 0.97];
  const DEFAULT_COLOR = [0.8, 0.8, 0.8, 1];
  const COMP = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4, MAT4: 16 };
  const CT = { 5120: [1, 'getInt8'], 5121: [1, 'getUint8'], 5122: [2, 'getInt16'],
    5123: [2, 'getUint16'], 5125: [4, 'getUint32'], 5126: [4, 'getFloat32'] };

  // ---- small column-major 4x4 matrix helpers (glTF and WebGL convention) ----
  const ident = () => [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
  function mul(a, b) {
    const o = new Array(16);
    for (let c = 0; c < 4; c++) {
      for (let r = 0; r < 4; r++) {
        let s = 0;
        for (let k = 0; k < 4; k++) s += a[k * 4 + r] * b[c * 4 + k];
        o[c * 4 + r] = s;
      }
    }
    return o;
  }
  function trs(t, q, s) {
    const x = q[0], y = q[1], z = q[2], w = q[3];
    return [
      (1 - 2 * (y * y + z * z)) * s[0], 2 * (x * y + z * w) * s[0], 2 * (x * z - y * w) * s[0], 0,
      2 * (x * y - z * w) * s[1], (1 - 2 * (x * x + z * z)) * s[1], 2 * (y * z + x * w) * s[1], 0,
      2 * (x * z + y * w) * s[2], 2 * (y * z - x * w) * s[2], (1 - 2 * (x * x + y * y)) * s[2], 0,
      t[0], t[1], t[2], 1];
  }
  function perspective(fovy, aspect, n, f) {
    const t = 1 / Math.tan(fovy / 2);
    return [t / aspect, 0, 0, 0, 0, t, 0, 0, 0, 0, (f + n) / (n - f), -1, 0, 0, 2 * f * n / (n - f), 0];
  }
  const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  function norm(a) {
    const l = Math.hypot(a[0], a[1], a[2]);
    return l > 0 ? [a[0] / l, a[1] / l, a[2] / l] : [0, 0, 1];
  }
  function lookAt(eye, center, up) {
    const z = norm(sub(eye, center)), x = norm(cross(up, z)), y = cross(z, x);
    return [x[0], y[0], z[0], 0, x[1], y[1], z[1], 0, x[2], y[2], z[2], 0,
      -dot(x, eye), -dot(y, eye), -dot(z, eye), 1];
  }

  // ---- GLB parsing ----
  function b64ToBytes(b64) {
    const s = atob(b64), out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function parseGlb(bytes) {
    if (bytes.length < 20) throw new Error('file too small for GLB');
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (dv.getUint32(0, true) !== 0x46546C67) throw new Error('not a GLB file (bad magic)');
    if (dv.getUint32(4, true) !== 2) throw new Error('unsupported GLB version ' + dv.getUint32(4, true));
    const total = Math.min(dv.getUint32(8, true), bytes.length);
    let off = 12, json = null, bin = null;
    while (off + 8 <= total) {
      const len = dv.getUint32(off, true), type = dv.getUint32(off + 4, true);
      if (off + 8 + len > total) throw new Error('truncated GLB chunk');
      const data = bytes.subarray(off + 8, off + 8 + len);
      if (type === 0x4E4F534A && !json) json = JSON.parse(new TextDecoder('utf-8').decode(data));
      else if (type === 0x004E4942 && !bin) bin = data;
      off += 8 + len + ((4 - (len % 4)) % 4);
    }
    if (!json) throw new Error('GLB has no JSON chunk');
    return { json, bin };
  }
  function getBuffer(gltf, i) {
    const b = (gltf.json.buffers || [])[i];
    if (!b) throw new Error('missing buffer ' + i);
    if (b.uri === undefined) {
      if (!gltf.bin) throw new Error('GLB has no BIN chunk');
      return gltf.bin;
    }
    const m = /^data:[^,]*;base64,(.*)$/.exec(b.uri);
    if (!m) throw new Error('external buffer URIs are not supported');
    return b64ToBytes(m[1]);
  }
  function readAccessor(gltf, idx) {
    const a = gltf.json.accessors[idx];
    if (!a) throw new Error('missing accessor ' + idx);
    const nc = COMP[a.type], ct = CT[a.componentType];
    if (!nc || !ct) throw new Error('unsupported accessor type ' + a.type + '/' + a.componentType);
    const n = a.count * nc;
    if (a.bufferView === undefined) return new Float32Array(n); // all zeros (sparse not supported)
    const bv = gltf.json.bufferViews[a.bufferView];
    const buf = getBuffer(gltf, bv.buffer);
    const base = (bv.byteOffset || 0) + (a.byteOffset || 0), size = ct[0];
    const stride = bv.byteStride || nc * size;
    if (base + stride * (a.count - 1) + nc * size > buf.length) throw new Error('accessor out of bounds');
    const dv = new DataView(buf.buffer, buf.byteOffset + base, buf.length - base);
    const out = a.componentType === 5125 ? new Uint32Array(n) : new Float32Array(n), get = dv[ct[1]].bind(dv);
    for (let i = 0; i < a.count; i++) {
      for (let k = 0; k < nc; k++) out[i * nc + k] = get(i * stride + k * size, true);
    }
    return out;
  }

  // Walk the default scene and bake every triangle primitive into flat world-space arrays.
  function buildGeometry(gltf) {
    const j = gltf.json, nodes = j.nodes || [], P = [], N = [], C = [];
    const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    let roots;
    if (j.scenes && j.scenes.length) roots = j.scenes[j.scene || 0].nodes || [];
    else {
      const isChild = {};
      nodes.forEach(nd => (nd.children || []).forEach(c => { isChild[c] = true; }));
      roots = nodes.map((_, i) => i).filter(i => !isChild[i]);
    }
    function addMesh(mesh, m) {
      // cofactor of the upper 3x3 = inverse-transpose up to scale: transforms normals
      const nm = [
        m[5] * m[10] - m[6] * m[9], m[6] * m[8] - m[4] * m[10], m[4] * m[9] - m[5] * m[8],
        m[9] * m[2] - m[10] * m[1], m[10] * m[0] - m[8] * m[2], m[8] * m[1] - m[9] * m[0],
        m[1] * m[6] - m[2] * m[5], m[2] * m[4] - m[0] * m[6], m[0] * m[5] - m[1] * m[4]];
      for (const prim of mesh.primitives || []) {
        const mode = prim.mode === undefined ? 4 : prim.mode;
        if ((mode !== 4 && mode !== 5 && mode !== 6) || prim.attributes.POSITION === undefined) continue;
        const pos = readAccessor(gltf, prim.attributes.POSITION);
        const nrm = prim.attributes.NORMAL !== undefined ? readAccessor(gltf, prim.attributes.NORMAL) : null;
        let ix = prim.indices !== undefined ? readAccessor(gltf, prim.indices) : null;
        if (!ix) { ix = new Uint32Array(pos.length / 3); for (let i = 0; i < ix.length; i++) ix[i] = i; }
        let tri = ix;
        if (mode !== 4) {
          tri = [];
          for (let i = 2; i < ix.length; i++) {
            if (mode === 6) tri.push(ix[0], ix[i - 1], ix[i]);
            else if (i % 2) tri.push(ix[i - 1], ix[i - 2], ix[i]);
            else tri.push(ix[i - 2], ix[i - 1], ix[i]);
          }
        }
        const mat = (j.materials || [])[prim.material];
        const pbr = (mat && mat.pbrMetallicRoughness) || {};
        const col = pbr.baseColorFactor || DEFAULT_COLOR;
        for (let t = 0; t + 2 < tri.length; t += 3) {
          const v = [];
          for (let k = 0; k < 3; k++) {
            const i = tri[t + k] * 3, x = pos[i], y = pos[i + 1], z = pos[i + 2];
            if (!(i + 2 < pos.length)) throw new Error('index out of range');
            const w = [m[0] * x + m[4] * y + m[8] * z + m[12], m[1] * x + m[5] * y + m[9] * z + m[13],
              m[2] * x + m[6] * y + m[10] * z + m[14]];
            v.push(w);
            for (let d = 0; d < 3; d++) { lo[d] = Math.min(lo[d], w[d]); hi[d] = Math.max(hi[d], w[d]); }
          }
          const flat = norm(cross(sub(v[1], v[0]), sub(v[2], v[0])));
          for (let k = 0; k < 3; k++) {
            P.push(v[k][0], v[k][1], v[k][2]);
            C.push(col[0], col[1], col[2]);
            if (nrm) {
              const i = tri[t + k] * 3, a = nrm[i], b = nrm[i + 1], c = nrm[i + 2];
              const n = norm([nm[0] * a + nm[3] * b + nm[6] * c, nm[1] * a + nm[4] * b + nm[7] * c,
                nm[2] * a + nm[5] * b + nm[8] * c]);
              N.push(n[0], n[1], n[2]);
            } else N.push(flat[0], flat[1], flat[2]);
          }
        }
      }
    }
    const seen = {};
    (function walk(list, parent) {
      for (const i of list) {
        const nd = nodes[i];
        if (!nd || seen[i]) continue; // tolerate broken files with cycles / bad indices
        seen[i] = true;
        const local = nd.matrix || trs(nd.translation || [0, 0, 0], nd.rotation || [0, 0, 0, 1], nd.scale || [1, 1, 1]);
        const world = mul(parent, local);
        if (nd.mesh !== undefined && j.meshes && j.meshes[nd.mesh]) addMesh(j.meshes[nd.mesh], world);
        walk(nd.children || [], world);
      }
    })(roots, ident());
    if (!P.length) throw new Error('no triangles found in the default scene');
    return { P: new Float32Array(P), N: new Float32Array(N), C: new Float32Array(C), lo, hi };
  }

  // ---- renderers ----
  function makeWebGL(canvas, g) {
    let gl = null;
    try {
      const o = { preserveDrawingBuffer: true, antialias: true, alpha: false };
      gl = canvas.getContext('webgl', o) || canvas.getContext('experimental-webgl', o);
    } catch (e) { gl = null; }
    if (!gl) return null;
    const vs = 'attribute vec3 p;attribute vec3 n;attribute vec3 c;uniform mat4 mvp;' +
      'varying vec3 vn;varying vec3 vc;void main(){vn=n;vc=c;gl_Position=mvp*vec4(p,1.0);}';
    const fs = 'precision mediump float;uniform vec3 L;varying vec3 vn;varying vec3 vc;' +
      'void main(){float d=abs(dot(normalize(vn),L));gl_FragColor=vec4(vc*(0.3+0.7*d),1.0);}';
    const prog = gl.createProgram();
    [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]].forEach(([type, src]) => {
      const sh = gl.createShader(type);
      gl.shaderSource(sh, src);
      gl.compileShader(sh);
      if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) throw new Error('shader: ' + gl.getShaderInfoLog(sh));
      gl.attachShader(prog, sh);
    });
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error('link: ' + gl.getProgramInfoLog(prog));
    gl.useProgram(prog);
    [['p', g.P], ['n', g.N], ['c', g.C]].forEach(([name, data]) => {
      const loc = gl.getAttribLocation(prog, name);
      gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
      gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 3, gl.FLOAT, false, 0, 0);
    });
    const uMvp = gl.getUniformLocation(prog, 'mvp'), uL = gl.getUniformLocation(prog, 'L');
    gl.enable(gl.DEPTH_TEST);
    const dbg = gl.getExtension('WEBGL_debug_renderer_info');
    canvas.dataset.rodinRenderer = 'webgl' + (dbg ? ': ' + gl.getParameter(dbg.UNMASKED_RENDERER_WEBGL) : '');
    return function draw(mvp, L) {
      gl.viewport(0, 0, canvas.width, canvas.height);
      gl.clearColor(BG[0], BG[1], BG[2], 1);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      gl.uniformMatrix4fv(uMvp, false, new Float32Array(mvp));
      gl.uniform3fv(uL, new Float32Array(L));
      gl.drawArrays(gl.TRIANGLES, 0, g.P.length / 3);
    };
  }
  function make2D(canvas, g) {
    const ctx = canvas.getContext('2d');
    if (!ctx) return null;
    canvas.dataset.rodinRenderer = 'canvas2d';
    const nt = g.P.length / 9, order = new Uint32Array(nt), depth = new Float32Array(nt);
    const sx = new Float32Array(nt * 3), sy = new Float32Array(nt * 3), ok = new Uint8Array(nt);
    const bg = 'rgb(' + BG.map(v => Math.round(v * 255)).join(',') + ')';
    return function draw(m, L) {
      const w = canvas.width, h = canvas.height, P = g.P;
      ctx.fillStyle = bg;
      ctx.fillRect(0, 0, w, h);
      for (let t = 0; t < nt; t++) {
        let z = 0;
        ok[t] = 1;
        order[t] = t;
        for (let k = 0; k < 3; k++) {
          const i = t * 9 + k * 3, x = P[i], y = P[i + 1], zz = P[i + 2];
          const cw = m[3] * x + m[7] * y + m[11] * zz + m[15];
          if (cw <= 1e-9) { ok[t] = 0; break; }
          sx[t * 3 + k] = ((m[0] * x + m[4] * y + m[8] * zz + m[12]) / cw + 1) * 0.5 * w;
          sy[t * 3 + k] = (1 - (m[1] * x + m[5] * y + m[9] * zz + m[13]) / cw) * 0.5 * h;
          z += (m[2] * x + m[6] * y + m[10] * zz + m[14]) / cw;
        }
        depth[t] = ok[t] ? z : -Infinity;
      }
      order.sort((a, b) => depth[b] - depth[a]); // far to near
      ctx.lineWidth = 0.75;
      ctx.lineJoin = 'round';
      for (let q = 0; q < nt; q++) {
        const t = order[q];
        if (!ok[t]) continue;
        const i = t * 9;
        const n = norm([g.N[i] + g.N[i + 3] + g.N[i + 6], g.N[i + 1] + g.N[i + 4] + g.N[i + 7],
          g.N[i + 2] + g.N[i + 5] + g.N[i + 8]]);
        const s = 0.3 + 0.7 * Math.abs(dot(n, L));
        const style = 'rgb(' + [0, 1, 2].map(d => Math.round(Math.min(1, g.C[i + d] * s) * 255)).join(',') + ')';
        ctx.fillStyle = style;
        ctx.strokeStyle = style; // stroke hides hairline seams between adjacent triangles
        ctx.beginPath();
        ctx.moveTo(sx[t * 3], sy[t * 3]);
        ctx.lineTo(sx[t * 3 + 1], sy[t * 3 + 1]);
        ctx.lineTo(sx[t * 3 + 2], sy[t * 3 + 2]);
        ctx.closePath();
        ctx.fill();
        ctx.stroke();
      }
    };
  }

  function showError(canvas, msg) {
    canvas.dataset.rodinViewer = 'error: ' + msg;
    if (canvas.parentNode) {
      const div = document.createElement('div');
      div.textContent = 'GLB viewer: ' + msg;
      div.style.cssText = 'color:#b00;font:12px sans-serif;padding:4px 0';
      canvas.parentNode.insertBefore(div, canvas.nextSibling);
    }
  }

  window.rodinGlbView = function rodinGlbView(canvas, base64Glb, opts) {
    opts = opts || {};
    if (!canvas) { console.error('rodinGlbView: canvas element not found'); return; }
    try {
      const g = buildGeometry(parseGlb(b64ToBytes(base64Glb)));
      // HiDPI: keep the CSS size given by the width/height attributes, scale the backing store.
      const cssW = +(canvas.dataset.rodinCssW || canvas.width), cssH = +(canvas.dataset.rodinCssH || canvas.height);
      const dpr = Math.min(window.devicePixelRatio || 1, 2);
      canvas.dataset.rodinCssW = cssW;
      canvas.dataset.rodinCssH = cssH;
      canvas.style.width = cssW + 'px';
      canvas.style.height = cssH + 'px';
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
      let draw = opts.renderer === '2d' ? null : makeWebGL(canvas, g);
      if (!draw) draw = make2D(canvas, g);
      if (!draw) throw new Error('neither WebGL nor Canvas2D is available');
      const center = [0, 1, 2].map(d => (g.lo[d] + g.hi[d]) / 2);
      const radius = Math.max(Math.hypot(g.hi[0] - g.lo[0], g.hi[1] - g.lo[1], g.hi[2] - g.lo[2]) / 2, 1e-6);
      const fov = Math.PI / 4, home = radius / Math.sin(fov / 2) * 1.05;
      const cam = { yaw: 0.6, pitch: 0.45, dist: home };
      const dir = (yaw, pitch) => [Math.cos(pitch) * Math.sin(yaw), Math.sin(pitch), Math.cos(pitch) * Math.cos(yaw)];
      const render = () => {
        const d = dir(cam.yaw, cam.pitch), eye = [0, 1, 2].map(k => center[k] + d[k] * cam.dist);
        const near = Math.max(cam.dist - radius * 1.5, cam.dist * 0.01), far = cam.dist + radius * 1.5;
        const proj = perspective(fov, canvas.width / canvas.height, near, far);
        const L = norm(dir(cam.yaw - 0.5, Math.min(cam.pitch + 0.6, 1.5))); // headlight, up-left
        draw(mul(proj, lookAt(eye, center, [0, 1, 0])), L);
      };
      let pending = false, drag = null;
      const request = () => {
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => { pending = false; render(); });
      };
      canvas.style.touchAction = 'none';
      canvas.style.cursor = 'grab';
      canvas.addEventListener('pointerdown', e => {
        drag = [e.clientX, e.clientY];
        try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* ignore */ }
      });
      canvas.addEventListener('pointermove', e => {
        if (!drag) return;
        cam.yaw -= (e.clientX - drag[0]) * 0.01;
        cam.pitch = Math.max(-1.55, Math.min(1.55, cam.pitch + (e.clientY - drag[1]) * 0.01));
        drag = [e.clientX, e.clientY];
        request();
      });
      const end = () => { drag = null; };
      canvas.addEventListener('pointerup', end);
      canvas.addEventListener('pointercancel', end);
      canvas.addEventListener('wheel', e => {
        e.preventDefault();
        cam.dist = Math.max(home * 0.05, Math.min(home * 20, cam.dist * Math.exp(e.deltaY * 0.001)));
        request();
      }, { passive: false });
      canvas.addEventListener('dblclick', () => { cam.yaw = 0.6; cam.pitch = 0.45; cam.dist = home; request(); });
      canvas.addEventListener('webglcontextlost', () => { canvas.dataset.rodinViewer = 'error: WebGL context lost'; });
      render();
      canvas.dataset.rodinTriangles = String(g.P.length / 9);
      canvas.dataset.rodinViewer = 'ready';
    } catch (e) {
      showError(canvas, (e && e.message) || String(e));
    }
  };
})();
