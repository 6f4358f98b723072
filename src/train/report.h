// report.h: the training report: DIR/report.html, one self-contained page (no
// scripts, no network) with inline SVG plots of the losses, learning rate and
// speed against steps from DIR/metrics.jsonl, the run's configuration
// (training_state.json, adapter_config.json) and final metrics.
#ifndef QT_REPORT_H
#define QT_REPORT_H

// Reads dir/metrics.jsonl (a partly written last line, as while training runs,
// is ignored) and writes dir/report.html atomically. QT_OK, or QT_ERR (logged)
// when there is no metrics.jsonl or it holds no points.
int qt_report_write(const char *dir);

#endif
