"""``pspnet-ros bench`` with a plain ``auto`` spec: the node's measured choice, with every
candidate's time and whether it was measured or cached."""
from pspnet_ros.bench import format_table, run_bench


def test_an_auto_row_shows_the_candidates_the_choice_and_its_source(tmp_path, monkeypatch):
    monkeypatch.setenv('ROS_HOME', str(tmp_path))
    kw = dict(model='', sizes=None, images=tmp_path / 'none', frames=2, warmup=1, repeats=1,
              auto_budget_s=2.0)
    first = run_bench(['auto'], **kw)['results'][0]
    auto = first['auto']
    assert auto['source'] == 'measured'
    times = auto['candidates_ms']
    assert list(times)[:2] == ['torch channels_last=False', 'torch channels_last=True']
    assert isinstance(times[auto['choice']], float)
    assert first['describe'].startswith(auto['choice'].split()[0] + ' on cpu')
    report = run_bench(['auto', 'auto@chain=torch'], **kw)
    again, fixed = report['results']
    assert (again['auto']['source'], again['auto']['choice']) == ('cached', auto['choice'])
    assert 'auto' not in fixed and fixed['describe'].startswith('torch on cpu')  # options given
    text = format_table(report)
    assert f'auto at 369x465: chose {auto["choice"]} (cached); candidates:' in text
    assert f'- {auto["choice"]}: {times[auto["choice"]]:.1f} ms  <- chosen' in text
    none = run_bench(['auto'], **{**kw, 'auto_budget_s': 0.0})['results'][0]
    assert 'auto' not in none and 'throughput_fps' in none      # the fixed chain
