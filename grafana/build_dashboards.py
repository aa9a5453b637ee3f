"""Generate grafana/dashboards/*.json: `make dashboards` (python -m grafana.build_dashboards; then commit the JSON).

Built with Grafana's own dashboard-as-code library, grafana-foundation-sdk, so every panel, query, variable and
link is typed against Grafana's dashboard schema. The SDK is published once per Grafana version; the build pinned
in requirements-dev.txt (1769699520!11.4.0) is the one for the grafana/grafana:11.4.0 image docker-compose.yml
runs. Written as code so every panel gets the same datasource, unit, description and layout rules, and so
tests/monitoring_tests can prove the committed JSON is exactly this output. Panels that could show "No data" on a
healthy stack (a counter that has not moved yet) add `or vector(0)`-style fallbacks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as schema

from prometheus.slo.spec import load_spec

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE_UID = "prometheus"  # grafana/provisioning/datasources/datasources.yml
DS = schema.DataSourceRef(type_val="prometheus", uid="${datasource}")
T = 'job="talker", instance=~"$instance"'  # talker series selector used by most panels
R = "[$__rate_interval]"
GRID_WIDTH = 24  # Grafana's grid is 24 columns wide

# The SLO burn-rate windows the SLO dashboard plots, one query each: every window a burn-rate alert reads, from
# the SLO spec prometheus/slo/slos.yml (prometheus/rules/slo.yml records talker:slo_<slo>_errors:ratio_rate<window>
# for each of them).
SLO_WINDOWS = load_spec().windows

Target = tuple[str, str]  # (PromQL expr, legend)
Item = Builder[schema.Panel] | dashboard_builders.Row


def queries(targets: list[Target]) -> list[Builder[prometheus.Dataquery]]:
    return [
        prometheus.Dataquery().datasource(DS).expr(expr).legend_format(legend).ref_id(chr(ord("A") + i))
        for i, (expr, legend) in enumerate(targets)
    ]


def timeseries_panel(title: str, description: str, unit: str, targets: list[Target], *,
                     width: int = 12, height: int = 8) -> timeseries.Panel:
    return (
        timeseries.Panel().title(title).description(description).datasource(DS).unit(unit)
        .targets(queries(targets)).span(width).height(height)
        .legend(common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM).show_legend(True))
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                 .sort(common.SortOrder.NONE))  # the SDK's default is "asc"; Grafana's (kept) is unsorted
        .fill_opacity(10).line_width(1)
    )


def stat_panel(title: str, description: str, unit: str, targets: list[Target], *, width: int = 12,
               height: int = 8, text_mode: common.BigValueTextMode = common.BigValueTextMode.AUTO,
               color_mode: common.BigValueColorMode = common.BigValueColorMode.VALUE,
               graph_mode: common.BigValueGraphMode = common.BigValueGraphMode.AREA) -> stat.Panel:
    return (
        stat.Panel().title(title).description(description).datasource(DS).unit(unit)
        .targets(queries(targets)).span(width).height(height)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .color_mode(color_mode).graph_mode(graph_mode).text_mode(text_mode)
    )


def row(title: str) -> dashboard_builders.Row:
    """A full-width heading (never collapsed) that starts a new line of panels."""
    return dashboard_builders.Row(title).collapsed(False)


def variables(instance_query: str) -> list[Builder[schema.VariableModel]]:
    return [
        dashboard_builders.DatasourceVariable("datasource").label("Data source").type("prometheus")
        .current(schema.VariableOption(selected=True, text="Prometheus", value=DATASOURCE_UID))
        .hide(schema.VariableHide.DONT_HIDE).regex(""),
        dashboard_builders.QueryVariable("instance").label("Instance").datasource(DS)
        .query({"query": instance_query, "refId": "instance"})
        .include_all(True).multi(True).all_value(".*")
        .current(schema.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(schema.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(schema.VariableSort.ALPHABETICAL_ASC)
        .hide(schema.VariableHide.DONT_HIDE),
    ]


def dashboard(uid: str, title: str, description: str, instance_query: str,
              items: list[Item]) -> dashboard_builders.Dashboard:
    """Rows and panels in reading order; the SDK lays them out left to right, a row starting a new line."""
    board = (
        dashboard_builders.Dashboard(title).uid(uid).description(description).tags(["talker"])
        .timezone("browser").readonly().tooltip(schema.DashboardCursorSync.CROSSHAIR).refresh("10s")
        .time("now-1h", "now").version(1)
        .link(dashboard_builders.DashboardLink("Talker").type(schema.DashboardLinkType.DASHBOARDS)
              .tags(["talker"]).as_dropdown(True))
        .variables(variables(instance_query))
    )
    for panel_id, item in enumerate(items, start=1):
        if isinstance(item, dashboard_builders.Row):
            board.with_row(item.id(panel_id))
        else:
            board.with_panel(item.id(panel_id))
    for panel in board.build().panels or []:
        # The SDK wraps to a new line only once a line is full: a panel that does not fit would overflow.
        if panel.grid_pos.x + panel.grid_pos.w > GRID_WIDTH:
            raise ValueError(f"{uid}: panel {panel.title!r} does not fit the line (pad the line before it)")
    return board


def overview() -> dashboard_builders.Dashboard:
    small = {"width": 4, "height": 4}
    return dashboard("talker-overview", "Talker / 服务总览", "talker 的流量、错误、延迟、排队与合成速度。",
                     'label_values(up{job="talker"}, instance)', [
        stat_panel("Up", "Prometheus 能否抓取 talker（1 = 能）。", "bool_yes_no",
                   [(f"up{{{T}}}", "{{instance}}")], **small),
        stat_panel("Ready", "talker_ready：模型已加载且未注入 not_ready 故障。", "bool_yes_no",
                   [(f"talker_ready{{{T}}}", "{{instance}}")], **small),
        stat_panel("QPS", "/v1 接口每秒请求数。", "reqps",
                   [(f'sum(rate(talker_http_requests_total{{{T}, route=~"/v1/.*"}}{R})) or vector(0)', "QPS")],
                   **small),
        stat_panel("5xx 错误率", "/v1 接口最近 1 分钟 5xx 比例（告警 TalkerHighErrorRate 的依据）。", "percentunit",
                   [(f'max(instance:talker_http_requests_errors:ratio_rate1m{{{T}}}) or vector(0)', "错误率")],
                   **small),
        stat_panel("In flight", "正在处理的 HTTP 请求数。", "short",
                   [(f"sum(talker_http_requests_in_flight{{{T}}})", "in flight")], **small),
        stat_panel("Active sessions", "占用合成槽位的任务数。", "short",
                   [(f"sum(talker_active_sessions{{{T}}})", "sessions")], **small),
        timeseries_panel("请求速率（按接口和状态码）", "每秒请求数，按路由模板和状态码拆分。", "reqps",
                         [(f"sum by (route, status) (rate(talker_http_requests_total{{{T}}}{R}))",
                           "{{route}} {{status}}")]),
        timeseries_panel("错误率（按接口）", "各路由最近 5 分钟 5xx 比例。", "percentunit",
                         [("route:talker_http_requests_errors:ratio_rate5m", "{{route}}")]),
        timeseries_panel("延迟 P50 / P95 / P99（按接口）", "最近 5 分钟请求延迟分位数（录制规则）。", "s",
                         [("route:talker_http_request_duration_seconds:histogram_quantile",
                           "{{route}} p{{quantile}}")], width=24),
        timeseries_panel("排队与并发", "等待槽位的请求、占用的槽位和并发上限：队列持续增长说明容量不足。", "short", [
            (f"sum(talker_queue_depth{{{T}}})", "queue depth"),
            (f"sum(talker_active_sessions{{{T}}})", "active"),
            (f"sum(talker_concurrency_limit{{{T}}})", "concurrency limit"),
        ]),
        timeseries_panel("拒绝的请求（按原因）",
                         "overloaded=429 队列满，timeout=超时，invalid=参数错误，unauthorized=管理接口鉴权失败。",
                         "reqps",
                         [(f"sum by (reason) (rate(talker_requests_rejected_total{{{T}}}{R}))", "{{reason}}")]),
        timeseries_panel("各阶段耗时 P95", "tts / animate / encode 每阶段 P95 计算时间。", "s",
                         [("stage:talker_stage_duration_seconds:histogram_quantile", "{{stage}}")]),
        timeseries_panel("实时率 P95（按阶段）", "生成 1 秒音频所需计算秒数；> 1 表示慢于实时（TalkerSlowSynthesis）。",
                         "short",
                         [(f'instance_stage:talker_realtime_factor:histogram_quantile{{{T}, quantile="0.95"}}',
                           "{{instance}} {{stage}}")]),
        timeseries_panel("合成产出", "每秒合成的音频秒数、字符数和视频帧数。", "short", [
            (f"sum by (engine) (rate(talker_audio_seconds_total{{{T}}}{R}))", "audio s/s {{engine}}"),
            (f"sum by (engine) (rate(talker_synthesized_characters_total{{{T}}}{R}))", "chars/s {{engine}}"),
            (f"sum(rate(talker_video_frames_total{{{T}}}{R}))", "frames/s"),
        ]),
        *streaming(),
        *conversation(),
        *llm_server(),
        row("进程与故障注入"),
        timeseries_panel("故障注入", "1 = 该类故障注入正在生效（演练用，记得关闭）。", "bool_on_off",
                         [(f"talker_fault_injection_active{{{T}}}", "{{instance}} {{kind}}")]),
        stat_panel("模型加载耗时", "启动时各引擎加载所需秒数。", "s",
                   [(f"talker_model_load_seconds{{{T}}}", "{{instance}} {{engine}}")], width=6),
        stat_panel("引擎退回 CPU", "talker_engine_cpu_fallback：1 = 引擎本应使用 GPU 却在 CPU 上运行"
                   "（TalkerEngineCPUFallback）；实际 provider 见 talker_engine_info。", "bool_yes_no",
                   [(f"talker_engine_cpu_fallback{{{T}}}", "{{instance}} {{engine}}")], width=6),
        timeseries_panel("进程内存", "talker 进程常驻内存（RSS）。", "bytes",
                         [(f"process_resident_memory_bytes{{{T}}}", "{{instance}}")], width=6),
        stat_panel("版本", "talker_build_info：版本、默认 TTS 引擎和设备。", "none",
                   [(f"talker_build_info{{{T}}}", "{{version}} {{tts_engine}} {{device}}")], width=12,
                   text_mode=common.BigValueTextMode.NAME, color_mode=common.BigValueColorMode.NONE,
                   graph_mode=common.BigValueGraphMode.NONE),
    ])


def streaming() -> list[Item]:
    """The "Streaming" row: how soon streamed speech and video start (TTFA, TTFF) and how streams end."""
    ttfa = f"talker_time_to_first_audio_seconds_bucket{{{T}}}"
    return [
        row("流式 Streaming"),
        timeseries_panel("首包延迟 TTFA P50 / P95 / P99（按引擎）",
                         "流式语音从收到请求到第一段音频发出的时间（含排队）。SLO：99% 在 0.5 秒内；"
                         "P95 > 1 秒持续 10 分钟告警（TalkerSlowFirstAudio）。", "s",
                         [(f"histogram_quantile({q}, sum by (engine, le) (rate({ttfa}{R})))", f"{{{{engine}}}} p{p}")
                          for q, p in ((0.5, "50"), (0.95, "95"), (0.99, "99"))]),
        timeseries_panel("首帧延迟 TTFF P95",
                         "流式视频（/v1/talk/stream）从收到请求到第一段视频片段发出的时间（含排队）。", "s",
                         [("histogram_quantile(0.95, sum by (route, le) "
                           f"(rate(talker_time_to_first_frame_seconds_bucket{{{T}}}{R})))", "{{route}} p95")]),
        timeseries_panel("活跃流（按类型）", "正在生成或发送的流式响应：audio = 语音流，video = 视频流。", "short",
                         [(f"sum by (kind) (talker_streams_active{{{T}}})", "{{kind}}")]),
        timeseries_panel("流结束（按结局）",
                         "每秒结束的流：completed 正常结束，client_closed 客户端断开，slow_reader 客户端不读被断开，"
                         "timeout 超时，error 服务端错误。", "short",
                         [(f"sum by (kind, outcome) (rate(talker_streams_ended_total{{{T}}}{R}))",
                           "{{kind}} {{outcome}}")]),
    ]


def conversation() -> list[Item]:
    """The "Conversation" row (issue 11): which stage is slow (asr / llm / tts / animate / encode side by side),
    the LLM's first token and throughput, and how LLM requests end."""
    stages = f"talker_stage_duration_seconds_bucket{{{T}}}"
    ttft = f"talker_llm_time_to_first_token_seconds_bucket{{{T}}}"
    return [
        row("对话 Conversation"),
        stat_panel("各阶段耗时 P95（并排）",
                   "对话一轮里每个阶段最近 5 分钟 P95 计算时间：asr 识别、llm 整段生成、tts 合成、animate 动画、"
                   "encode 编码。回答「哪个阶段慢」：最大的那个。asr / llm 在第一轮对话后才出现。", "s",
                   [(f"histogram_quantile(0.95, sum by (stage, le) (rate({stages}{R})))", "{{stage}}")],
                   color_mode=common.BigValueColorMode.BACKGROUND, graph_mode=common.BigValueGraphMode.NONE),
        timeseries_panel("各阶段耗时 P95 走势",
                         "同左，随时间变化：LLM 阶段突然变慢而 TTS 不变，多半是 LLM 所在 GPU 满载。", "s",
                         [(f"histogram_quantile(0.95, sum by (stage, le) (rate({stages}{R})))", "{{stage}} p95")]),
        timeseries_panel("LLM 首个 token 延迟 P50 / P95",
                         "从发出 LLM 请求到收到第一个内容 token。P95 > 2 秒持续 10 分钟告警"
                         "（TalkerLLMSlowFirstToken）；故障注入 llm_extra_latency_ms 会加在这里。", "s",
                         [(f"histogram_quantile({q}, sum by (le) (rate({ttft}{R})))", f"p{p}")
                          for q, p in ((0.5, "50"), (0.95, "95"))]),
        timeseries_panel("LLM token 速率",
                         "每秒 token 数：prompt = 发给 LLM 的提示（含历史），completion = LLM 生成的回答"
                         "（以服务端 usage 为准，否则按收到的增量计）。", "short",
                         [(f"sum by (kind) (rate(talker_llm_tokens_total{{{T}}}{R}))", "{{kind}} tokens/s")]),
        timeseries_panel("LLM 请求（按结局）",
                         "每秒结束的 LLM 请求：completed 完成，cancelled 用户插话打断，timeout 超时，connection_error "
                         "连不上，upstream_error 上游 HTTP 错误，stream_cut 流中断。", "reqps",
                         [(f"sum by (outcome) (rate(talker_llm_requests_total{{{T}}}{R}))", "{{outcome}}")]),
        timeseries_panel("LLM 失败率",
                         "最近 5 分钟失败的 LLM 请求比例（不含 cancelled）；> 10% 持续 5 分钟告警"
                         "（TalkerLLMUpstreamFailing）。故障注入 llm_error_rate 会计入 upstream_error。", "percentunit",
                         [(f"instance:talker_llm_requests_failed:ratio_rate5m{{{T}}}", "{{instance}}")]),
        timeseries_panel("对话首包延迟 P50 / P95",
                         "从用户一轮结束（文字收到或语音输入结束）到第一段回答音频发出：用户感受到的等待"
                         "（含 ASR、LLM 首句与 TTS）。", "s",
                         [("histogram_quantile("
                           f"{q}, sum by (le) (rate(talker_chat_first_audio_seconds_bucket{{{T}}}{R})))", f"p{p}")
                          for q, p in ((0.5, "50"), (0.95, "95"))], width=8),
        timeseries_panel("对话会话数", "当前打开的对话 WebSocket 连接（/v1/chat/ws）。", "short",
                         [(f"sum(talker_chat_sessions_active{{{T}}})", "sessions")], width=8),
        timeseries_panel("对话轮次（按输入和结局）",
                         "每秒结束的对话轮次：completed 完成；cancelled 插话打断或客户端离开；refused 过载；"
                         "llm_error / asr_error / tts_error 该阶段失败；invalid 输入不合法。", "short",
                         [(f"sum by (input, outcome) (rate(talker_chat_turns_total{{{T}}}{R}))",
                           "{{input}} {{outcome}}")], width=8),
    ]


def llm_server() -> list[Item]:
    """The "LLM server" row: the compose profile `llm`'s own server (job "llm"), seen from its /metrics: vLLM on GPU
    hosts, llama.cpp's llama-server on CPU ones; each panel queries both (only one runs, the other stays empty).
    Metric names from the servers' source at the pinned versions: tests/contract.py LLM_SERVER_SERIES says where."""
    job = 'job="llm"'
    ttft = f"vllm:time_to_first_token_seconds_bucket{{{job}}}"
    return [
        row("LLM 服务器 LLM server"),
        timeseries_panel("LLM 服务器 token 吞吐",
                         "LLM 服务器自己统计的每秒 token 数：prompt = 处理的提示，generation = 生成的回答。"
                         "vLLM（GPU）或 llama.cpp（CPU）其一有数；compose profile llm 未开启时为空。", "short", [
                             (f"sum(rate(vllm:prompt_tokens_total{{{job}}}{R}))", "vLLM prompt"),
                             (f"sum(rate(vllm:generation_tokens_total{{{job}}}{R}))", "vLLM generation"),
                             (f"sum(rate(llamacpp:prompt_tokens_total{{{job}}}{R}))", "llama.cpp prompt"),
                             (f"sum(rate(llamacpp:tokens_predicted_total{{{job}}}{R}))", "llama.cpp generation"),
                         ]),
        timeseries_panel("LLM 服务器请求：处理中 / 排队",
                         "正在生成的请求和等待的请求；排队持续不为 0 说明 LLM 服务器是瓶颈"
                         "（vLLM 的 waiting，llama.cpp 的 deferred = 没有空闲 slot，见 LLM_PARALLEL）。", "short", [
                             (f"sum(vllm:num_requests_running{{{job}}})", "vLLM running"),
                             (f"sum(vllm:num_requests_waiting{{{job}}})", "vLLM waiting"),
                             (f"sum(llamacpp:requests_processing{{{job}}})", "llama.cpp processing"),
                             (f"sum(llamacpp:requests_deferred{{{job}}})", "llama.cpp deferred"),
                         ]),
        timeseries_panel("LLM 服务器首 token 延迟 P50 / P95（vLLM）",
                         "vLLM 自己测的首 token 时间（不含网络和 talker 的排队），与上面对话行 talker 测的"
                         "LLM 首 token 对照：两者差得多说明时间花在服务器之外。llama.cpp 无此直方图。", "s",
                         [(f"histogram_quantile({q}, sum by (le) (rate({ttft}{R})))", f"p{p}")
                          for q, p in ((0.5, "50"), (0.95, "95"))]),
        timeseries_panel("LLM 服务器生成速度与 KV cache",
                         "llama.cpp：最近的平均生成速度（tokens/s，predicted_tokens_seconds）；vLLM：KV cache 占用比例"
                         "（1 = 满，满了新请求会排队或被抢占）。", "short", [
                             (f"max(llamacpp:predicted_tokens_seconds{{{job}}})", "llama.cpp tokens/s"),
                             (f"max(vllm:kv_cache_usage_perc{{{job}}})", "vLLM KV cache usage"),
                         ]),
    ]


def gpu() -> dashboard_builders.Dashboard:
    return dashboard("talker-gpu", "Talker / GPU", "talker 通过 NVML 读取的 GPU 指标；GPU 主机上另有 dcgm-exporter。",
                     'label_values(up{job="talker"}, instance)', [
        stat_panel("GPU 可用", "talker_gpu_available：1 = NVML 可用且至少有一块 GPU；CPU 主机为 0。", "bool_yes_no",
                   [(f"talker_gpu_available{{{T}}}", "{{instance}}")], width=6, height=4),
        timeseries_panel("Torch 已分配显存", "torch.cuda.memory_allocated，按设备。", "bytes",
                         [(f"talker_torch_memory_allocated_bytes{{{T}}}", "{{instance}} {{device}}")],
                         width=18, height=4),
        timeseries_panel("显存 已用 / 总量", "每块 GPU 的显存使用量与总量（所有进程）。", "bytes", [
            (f"talker_gpu_memory_used_bytes{{{T}}}", "{{instance}} GPU{{gpu}} used"),
            (f"talker_gpu_memory_total_bytes{{{T}}}", "{{instance}} GPU{{gpu}} total"),
        ]),
        timeseries_panel("GPU 利用率", "采样周期内有 kernel 运行的时间比例。", "percentunit",
                         [(f"talker_gpu_utilization_ratio{{{T}}}", "{{instance}} GPU{{gpu}} {{name}}")]),
        timeseries_panel("GPU 温度", "核心温度；超过 85°C 持续 5 分钟告警。", "celsius",
                         [(f"talker_gpu_temperature_celsius{{{T}}}", "{{instance}} GPU{{gpu}}")]),
        timeseries_panel("GPU 功耗", "板卡功耗。", "watt",
                         [(f"talker_gpu_power_watts{{{T}}}", "{{instance}} GPU{{gpu}}")]),
        timeseries_panel("DCGM 利用率", "dcgm-exporter 的 DCGM_FI_DEV_GPU_UTIL（仅 GPU 主机的 dcgm-exporter 任务）。",
                         "percent", [("DCGM_FI_DEV_GPU_UTIL", "GPU {{gpu}} {{modelName}}")]),
        timeseries_panel("DCGM 显存已用", "dcgm-exporter 的 DCGM_FI_DEV_FB_USED（MiB）。", "decmbytes",
                         [("DCGM_FI_DEV_FB_USED", "GPU {{gpu}} {{modelName}}")]),
    ])


def slo() -> dashboard_builders.Dashboard:
    burn = "talker:slo_{slo}_errors:ratio_rate{w} / on () group_left () (1 - max(talker:slo_{slo}:objective))"
    relay = 'instance=~"$instance"'
    budget = {"width": 6, "height": 5}
    slo_budget = {"width": 5, "height": 5}  # four SLOs and the firing alerts on one line
    return dashboard("talker-slo", "Talker / SLO 与告警",
                     "错误预算、燃烧率、当前告警和告警链路（relay / Alertmanager）健康。",
                     'label_values(up{job="dingtalk-relay"}, instance)', [
        stat_panel("可用性错误预算剩余（30 天）", "1 = 未消耗；≤ 0 = 耗尽。SLO：/v1 接口 99.5% 非 5xx。", "percentunit",
                   [("talker:slo_availability:error_budget_remaining", "{{job}}")], **slo_budget),
        stat_panel("延迟错误预算剩余（30 天）", "SLO：95% 的 /v1/tts 在 2 秒内完成。", "percentunit",
                   [("talker:slo_latency:error_budget_remaining", "{{job}}")], **slo_budget),
        stat_panel("首包延迟错误预算剩余（30 天）", "SLO：99% 的流式语音在 0.5 秒内发出第一段音频（TTFA）。",
                   "percentunit", [("talker:slo_ttfa:error_budget_remaining", "{{job}}")], **slo_budget),
        stat_panel("对话首包错误预算剩余（30 天）",
                   "SLO：95% 的对话轮次在用户说完后 3 秒内发出第一段回答音频（/v1/chat/ws）。", "percentunit",
                   [("talker:slo_chat:error_budget_remaining", "{{job}}")], **slo_budget),
        stat_panel("正在触发的告警", "按告警名和级别统计的 firing 告警（Watchdog 始终存在）。", "short",
                   [('sum by (alertname, severity) (ALERTS{alertstate="firing"})', "{{alertname}} {{severity}}")],
                   width=4, height=5),
        timeseries_panel("可用性燃烧率（按窗口）",
                         "错误率 / 允许错误率。14.4（5m&1h）和 6（30m&6h）会呼叫值班；3、1 开工单。", "short",
                         [(burn.format(slo="availability", w=w), w) for w in SLO_WINDOWS], width=6),
        timeseries_panel("延迟燃烧率（按窗口）", "慢请求比例 / 允许比例（5%）。", "short",
                         [(burn.format(slo="latency", w=w), w) for w in SLO_WINDOWS], width=6),
        timeseries_panel("首包延迟燃烧率（按窗口）", "首包晚于 0.5 秒的流式语音比例 / 允许比例（1%）。", "short",
                         [(burn.format(slo="ttfa", w=w), w) for w in SLO_WINDOWS], width=6),
        timeseries_panel("对话首包燃烧率（按窗口）", "首段回答音频晚于 3 秒的对话轮次比例 / 允许比例（5%）。", "short",
                         [(burn.format(slo="chat", w=w), w) for w in SLO_WINDOWS], width=6),
        timeseries_panel("钉钉投递（按结果）", "relay 每秒发送结果：sent / retried / failed。", "short",
                         [(f"sum by (outcome) (rate(dingtalk_relay_notifications_total{{{relay}}}{R}))",
                           "{{outcome}}")]),
        timeseries_panel("钉钉 API 错误与截断", "DingTalk 返回的非 0 errcode、被截断的消息、被 relay 限速的消息。",
                         "short", [
            (f"sum by (errcode) (rate(dingtalk_relay_api_errors_total{{{relay}}}{R}))", "errcode {{errcode}}"),
            (f"sum(rate(dingtalk_relay_messages_truncated_total{{{relay}}}{R}))", "truncated"),
            (f"sum(rate(dingtalk_relay_rate_limited_total{{{relay}}}{R}))", "rate limited"),
        ]),
        stat_panel("心跳间隔", "距上次 Alertmanager Watchdog 心跳的秒数（从未收到时显示为距 1970 年）。", "s",
                   [(f"time() - dingtalk_relay_last_heartbeat_timestamp_seconds{{{relay}}}", "{{instance}}")],
                   **budget),
        stat_panel("告警链路中断", "dingtalk_relay_pipeline_broken：1 = 心跳超时。", "bool_yes_no",
                   [(f"dingtalk_relay_pipeline_broken{{{relay}}}", "{{instance}}")], **budget),
        timeseries_panel("投递耗时 P95", "relay 从收到 webhook 到钉钉返回成功的 P95。", "s",
                         [("histogram_quantile(0.95, sum by (le) ("
                           f"rate(dingtalk_relay_delivery_duration_seconds_bucket{{{relay}}}{R})))", "p95")],
                         width=12, height=5),
        timeseries_panel("Alertmanager 通知（按渠道）", "Alertmanager 每秒发出的通知和失败数（webhook / email）。",
                         "short", [
            (f"sum by (integration) (rate(alertmanager_notifications_total{R}))", "{{integration}} sent"),
            (f"sum by (integration) (rate(alertmanager_notifications_failed_total{R}))", "{{integration}} failed"),
        ], width=24),
    ])


def host() -> dashboard_builders.Dashboard:
    n = 'job="node-exporter", instance=~"$instance"'
    fs = f'{n}, fstype!~"tmpfs|overlay|squashfs|ramfs|nsfs|devtmpfs|fuse.*"'
    nic = f'{n}, device!~"lo|veth.*|docker.*|br-.*"'
    return dashboard("talker-host", "Talker / 主机", "node-exporter 的主机 CPU、内存、磁盘和网络。",
                     'label_values(up{job="node-exporter"}, instance)', [
        timeseries_panel("CPU 使用率", "1 - 空闲时间比例（所有核平均）。", "percentunit",
                         [(f'1 - avg by (instance) (rate(node_cpu_seconds_total{{{n}, mode="idle"}}{R}))',
                           "{{instance}}")]),
        timeseries_panel("负载", "1 分钟平均负载与 CPU 核数。", "short", [
            (f"node_load1{{{n}}}", "{{instance}} load1"),
            (f'count by (instance) (node_cpu_seconds_total{{{n}, mode="idle"}})', "{{instance}} cores"),
        ]),
        timeseries_panel("内存使用率", "1 - MemAvailable / MemTotal。", "percentunit",
                         [(f"1 - node_memory_MemAvailable_bytes{{{n}}} / node_memory_MemTotal_bytes{{{n}}}",
                           "{{instance}}")]),
        timeseries_panel("磁盘使用率（按挂载点）", "真实文件系统的已用比例（排除 tmpfs/overlay 等）。", "percentunit",
                         [(f"1 - node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}",
                           "{{instance}} {{mountpoint}}")]),
        timeseries_panel("网络流量", "每秒收发字节（排除回环和容器虚拟网卡）。", "Bps", [
            (f"sum by (instance) (rate(node_network_receive_bytes_total{{{nic}}}{R}))", "{{instance}} rx"),
            (f"sum by (instance) (rate(node_network_transmit_bytes_total{{{nic}}}{R}))", "{{instance}} tx"),
        ]),
        timeseries_panel("磁盘 IO", "每秒读写字节。", "Bps", [
            (f"sum by (instance) (rate(node_disk_read_bytes_total{{{n}}}{R}))", "{{instance}} read"),
            (f"sum by (instance) (rate(node_disk_written_bytes_total{{{n}}}{R}))", "{{instance}} write"),
        ]),
    ])


DASHBOARDS = {"talker-overview": overview, "talker-gpu": gpu, "talker-slo": slo, "talker-host": host}


def render_all() -> dict[str, str]:
    """File name -> JSON text, exactly as committed."""
    return {
        f"{name}.json": json.dumps(build().build(), cls=JSONEncoder, ensure_ascii=False, indent=2) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (OUT_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
