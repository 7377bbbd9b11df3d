"""Live memory display.

    sampler = MemorySampler(lambda: session.engine_pid, parent=window)   # sampler.py: 1 Hz, off the UI thread
    sampler.sampled.connect(memory_strip.show_sample)                     # memory_strip.py: the one-line strip
    sampler.sampled.connect(dashboard.show_sample)                        # dashboard.py: the full panel
    session.loaded.connect(dashboard.show_loaded_model)                   # "Prediction vs actual"
    sampler.start()            # and sampler.stop() in closeEvent

The figures and their arithmetic live in core.monitor.samples and core.monitor.history; these modules only show
them: stacked_bar.py (a bar split into named parts, with a text legend), history_chart.py (a ten-minute
QtCharts line chart), prediction_box.py.
"""
