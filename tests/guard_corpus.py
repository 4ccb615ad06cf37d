"""The corpus the send-time guard is tried on: ways of spending, and ordinary cells.

Each spending case is ``(name, setup, spend)``: ``setup`` defines things and sends nothing;
``spend`` sends billable requests however the idiom does. ``PRELUDE`` runs first in the kernel.
"""

from __future__ import annotations

import importlib.util

PRELUDE = '''
import asyncio, dataclasses, functools, http.client, json, os, re, time, urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
import requests, urllib3
BASE = os.environ["RODIN_API_BASE"]
HEADERS = {"Authorization": f"Bearer {os.environ['RODIN_API_KEY']}"}
HOST = urllib.parse.urlsplit(BASE)

def submit(prompt, tier="Gen-2", addons=None):
    """Submit one generation (the helper most notebooks have)."""
    files = {"prompt": (None, prompt), "tier": (None, tier)}
    if addons:
        files["addons"] = (None, json.dumps(addons))
    r = requests.post(f"{BASE}/rodin", headers=HEADERS, files=files, timeout=30)
    r.raise_for_status()
    return r.json()

def multipart(**fields):
    body = b"".join(f'--bb\\r\\nContent-Disposition: form-data; name="{k}"\\r\\n\\r\\n{v}\\r\\n'
                    .encode() for k, v in fields.items()) + b"--bb--\\r\\n"
    return body, {**HEADERS, "Content-Type": "multipart/form-data; boundary=bb"}

prompts = ["a chair", "a lamp", "a mug"]
'''

SPENDING: list[tuple[str, str, str]] = [
    ("direct post", "", 'r = requests.post(f"{BASE}/rodin", headers=HEADERS, files={"prompt": '
     '(None, "a cube"), "tier": (None, "Gen-2")}, timeout=30)'),
    ("loop, n set in cell", "", "n = 3\nfor i in range(n):\n    submit(f'chair {i}')"),
    ("tqdm-like wrapper", "def tqdm(it):\n    for x in it:\n        yield x",
     "for p in tqdm(prompts):\n    submit(p)"),
    ("while queue", "", "queue = list(prompts)\nwhile queue:\n    submit(queue.pop())"),
    ("executor.map", "", "with ThreadPoolExecutor(4) as ex:\n    list(ex.map(submit, prompts))"),
    ("executor.submit", "", "with ThreadPoolExecutor(3) as ex:\n"
     "    futures = [ex.submit(submit, p) for p in prompts]\n"
     "    results = [f.result() for f in futures]"),
    ("as_completed", "", "with ThreadPoolExecutor(2) as ex:\n"
     "    for f in as_completed([ex.submit(submit, p) for p in prompts]):\n        f.result()"),
    ("pandas-like apply", "class Column(list):\n    def apply(self, fn):\n"
     "        return Column(fn(v) for v in self)\n"
     "class Frame(dict):\n    def iterrows(self):\n"
     "        keys = list(self)\n        for i in range(len(self[keys[0]])):\n"
     "            yield i, {k: self[k][i] for k in keys}\n"
     "df = Frame(prompt=Column(prompts), tier=Column(['Gen-2'] * 3))",
     'df["prompt"].apply(submit)'),
    ("iterrows", "", "for _, row in df.iterrows():\n    submit(row['prompt'], tier=row['tier'])"),
    ("helper with a loop", "def batch(ps):\n    return [submit(p) for p in ps]", "batch(prompts)"),
    ("module from %%writefile", "%%writefile rodin_helpers_c.py\nimport os, requests\n"
     "def make(prompt):\n    base = os.environ['RODIN_API_BASE']\n"
     "    h = {'Authorization': 'Bearer ' + os.environ['RODIN_API_KEY']}\n"
     "    return requests.post(base + '/rodin', headers=h, files={'prompt': (None, prompt)},"
     " timeout=30).json()\n",
     "import rodin_helpers_c\nrodin_helpers_c.make('a vase')"),
    ("%run script", "%%writefile spend_script_c.py\nimport os, requests\n"
     "requests.post(os.environ['RODIN_API_BASE'] + '/rodin', files={'prompt': (None, 'x')},"
     " headers={'Authorization': 'Bearer ' + os.environ['RODIN_API_KEY']}, timeout=30)\n",
     "%run spend_script_c.py"),
    ("exec", "", "exec(\"submit('from exec')\")"),
    ("asyncio.to_thread", "", "await asyncio.gather(*[asyncio.to_thread(submit, p) "
     "for p in prompts])"),
    ("urllib.request", "", "body, h = multipart(prompt='x', tier='Gen-2')\n"
     "urllib.request.urlopen(urllib.request.Request(f'{BASE}/rodin', data=body, headers=h,"
     " method='POST'), timeout=30).read()"),
    ("urllib opener", "", "body, h = multipart(prompt='x', tier='Sketch')\n"
     "opener = urllib.request.build_opener()\n"
     "opener.open(urllib.request.Request(f'{BASE}/rodin', data=body, headers=h), "
     "timeout=30).read()"),
    ("http.client", "", "body, h = multipart(prompt='x', tier='Gen-2')\n"
     "conn = http.client.HTTPConnection(HOST.hostname, HOST.port, timeout=30)\n"
     "conn.request('POST', HOST.path + '/rodin', body=body, headers=h)\n"
     "conn.getresponse().read()"),
    ("urllib3 direct", "", "urllib3.PoolManager().request('POST', f'{BASE}/rodin', "
     "fields={'prompt': 'x', 'tier': 'Gen-2'}, headers=HEADERS)"),
    ("session with mounted adapter", "from requests.adapters import HTTPAdapter\n"
     "s = requests.Session()\ns.mount('http://', HTTPAdapter(max_retries=0))\n"
     "s.headers.update(HEADERS)",
     "s.post(f'{BASE}/rodin', files={'prompt': (None, 'x'), 'tier': (None, 'Gen-2')})"),
    ("dataclass-held URL", "@dataclasses.dataclass\nclass Api:\n    base: str\n"
     "    def url(self, name):\n        return f'{self.base}/{name}'\napi = Api(BASE)",
     "requests.post(api.url('rodin'), headers=HEADERS, files={'prompt': (None, 'x')})"),
    ("f-string tier", "", "gen = 2\nsubmit('x', tier=f'Gen-{gen}')"),
    ("tier from a lookup", "TIERS = {'cheap': 'Gen-2', 'best': 'Gen-2.5-Extreme-High'}",
     "submit('x', TIERS['best'])"),
    ("tier from a tuple", "", "tier, addons = ('Gen-2.5-High', ['HighPack'])\n"
     "submit('x', tier, addons)"),
    ("bang", "", "requests.post(f'{BASE}/bang', headers=HEADERS, files={'asset_id': "
     "(None, 'a1'), 'strength': (None, '5')})"),
    ("texture only", "", "requests.post(f'{BASE}/rodin_texture_only', headers=HEADERS, "
     "files={'image': ('a.png', b'png'), 'model': ('m.glb', b'glb'), 'prompt': (None, 'x')})"),
    ("requests.request", "", "requests.request('POST', f'{BASE}/rodin', headers=HEADERS, "
     "files={'prompt': (None, 'x')})"),
    ("client class", "class Rodin:\n    def __init__(self):\n"
     "        self.session = requests.Session()\n    def generate(self, prompt):\n"
     "        return self.session.post(f'{BASE}/rodin', headers=HEADERS,"
     " files={'prompt': (None, prompt)}).json()\nclient = Rodin()",
     "client.generate('a boat')"),
    ("functools.partial", "cheap = functools.partial(submit, tier='Sketch')",
     "[cheap(p) for p in prompts]"),
    ("map lambda", "", "list(map(lambda p: submit(p), prompts))"),
    ("retrying decorator", "def retry(times):\n    def wrap(fn):\n"
     "        def inner(*a, **k):\n            for i in range(times):\n"
     "                try:\n                    return fn(*a, **k)\n"
     "                except Exception:\n                    if i == times - 1:\n"
     "                        raise\n        return inner\n    return wrap\n"
     "@retry(3)\ndef robust(p):\n    return submit(p)", "robust('x')"),
    ("generator of jobs", "def jobs(ps):\n    for p in ps:\n        yield submit(p)",
     "g = jobs(prompts)\nnext(g)"),
    ("getattr method", "", "getattr(requests, 'post')(f'{BASE}/' + 'ro' + 'din', "
     "headers=HEADERS, files={'prompt': (None, 'x')})"),
    ("URL from JSON config", "CONFIG = json.loads(json.dumps({'url': BASE + '/rodin'}))",
     "requests.post(CONFIG['url'], headers=HEADERS, files={'prompt': (None, 'x')})"),
]

if importlib.util.find_spec("httpx") is not None:
    SPENDING += [
        ("httpx", "import httpx", "httpx.post(f'{BASE}/rodin', headers=HEADERS, "
         "files={'prompt': (None, 'x'), 'tier': (None, 'Gen-2')})"),
        ("httpx async", "", "async with httpx.AsyncClient(headers=HEADERS) as ac:\n"
         "    await ac.post(f'{BASE}/rodin', files={'prompt': (None, 'x')})"),
    ]

ORDINARY: list[str] = [
    "ENDPOINTS = {'generate': f'{BASE}/rodin', 'status': f'{BASE}/status'}\n"
    "requests.post(ENDPOINTS['status'], headers=HEADERS, json={'subscription_key': 'k'})",
    "for url in [f'{BASE}/download'] * 2:\n"
    "    requests.post(url, headers=HEADERS, json={'task_uuid': 'none'})",
    "def download(job):\n    return requests.post(f'{BASE}/download', headers=HEADERS, "
    "json={'task_uuid': job}).status_code\n"
    "with ThreadPoolExecutor(2) as ex:\n    codes = [ex.submit(download, j).result() "
    "for j in ['a', 'b']]",
    "log = 'POST /rodin 201\\nPOST /status 200\\nPOST /rodin 402\\n'\n"
    "spent = sum(1 for line in log.splitlines() if line.startswith('POST /rodin'))",
    "pattern = re.compile(r'/(rodin|rodin_texture_only|bang)\\b')\n"
    "hits = pattern.findall('/api/v2/rodin and /bang')",
    "help(submit)",
    "costs = [0.5, 1.5, 0.5]\nfor c in costs:\n    print('#' * int(c * 10), c)",
    "import pathlib\nparts = pathlib.Path('out/rodin/models/chair.glb').parts",
    "print(f'{BASE}/rodin is where generations go')",
    "PRICES = {'rodin': 0.5, 'bang': 0.5, 'rodin_texture_only': 0.5}\n"
    "total = sum(PRICES.values())",
    "payload = json.dumps({'tier': 'Gen-2', 'addons': ['HighPack'], 'prompt': 'x'})",
    "def notes():\n    \"\"\"POST /rodin costs credits; /status is free.\"\"\"\n"
    "    return 1\nnotes()",
    "class Generator:\n    def generate(self, prompt):\n        return submit(prompt)\n"
    "gen_obj = Generator()",
    "later = lambda p: submit(p)\nsafe = [later]",
    "name = 'rodin'.upper() + '_' + 'bang'.title()",
    "urls = [f'{BASE}/{e}' for e in ('rodin', 'bang', 'status')]",
    "%timeit -n 3 -r 1 sum(range(100))",
    "%%time\ntotal = 0\nfor i in range(1000):\n    total += i",
    "rows = [{'tier': 'Gen-2', 'ok': True}, {'tier': 'Sketch', 'ok': False}]\n"
    "good = [r for r in rows if r['ok']]",
    "for key in ['k1', 'k2']:\n    requests.post(f'{BASE}/status', headers=HEADERS, "
    "json={'subscription_key': key}).status_code",
    "parts = urllib.parse.urlsplit(f'{BASE}/rodin')\nparts.path",
    "%%writefile notes_c.txt\nPOST /rodin with tier=Gen-2\n!curl -X POST $BASE/rodin\n",
    "!echo POST /rodin costs 0.5",
    "try:\n    raise ValueError('rodin tier unknown')\nexcept ValueError as e:\n    msg = str(e)",
    "@dataclasses.dataclass\nclass Job:\n    uuid: str\n    status: str = 'Waiting'\n"
    "jobs_done = [Job('a', 'Done'), Job('b')]",
    "async def tick():\n    await asyncio.sleep(0.01)\n    return 'rodin'\n"
    "await asyncio.gather(tick(), tick())",
    "with ThreadPoolExecutor(2) as ex:\n    squares = list(ex.map(lambda x: x * x, range(10)))",
    "%rodin_balance --ledger",
    "%rodin_guard",
    "text = '!curl -X POST https://api.hyper3d.com/api/v2/rodin -F tier=Gen-2'\nlen(text)",
    "requests.get(f'{BASE}/status')  # a GET, not a generation",
    "import math\nhist = {t: math.ceil(c) for t, c in [('Gen-2', 0.5), ('Gen-2.5-High', 1.5)]}",
    "submit.__doc__",
]
