"""Reads a TensorBoard log directory with the real `tensorboard` package and prints
what it finds as JSON (used by summary_writer_test.cc to check our event files).

Usage: read_tb_events.py LOGDIR
Output: {"scalars": {tag: [[step, value], ...]}, "histograms": {tag: [[step, min, max,
num, sum, sum_squares, [limits], [counts]], ...]}, "images": {tag: [[step, w, h,
png_bytes_len], ...]}, "texts": {tag: [[step, text], ...]}}
"""
import json
import sys

from tensorboard.backend.event_processing import event_accumulator


def main(logdir):
    acc = event_accumulator.EventAccumulator(
        logdir,
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0,
                       event_accumulator.IMAGES: 0, event_accumulator.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    out = {"scalars": {}, "histograms": {}, "images": {}, "texts": {}}
    for tag in tags.get("scalars", []):
        out["scalars"][tag] = [[e.step, e.value] for e in acc.Scalars(tag)]
    for tag in tags.get("histograms", []):
        out["histograms"][tag] = [
            [e.step, e.histogram_value.min, e.histogram_value.max, e.histogram_value.num,
             e.histogram_value.sum, e.histogram_value.sum_squares,
             list(e.histogram_value.bucket_limit), list(e.histogram_value.bucket)]
            for e in acc.Histograms(tag)]
    for tag in tags.get("images", []):
        out["images"][tag] = [[e.step, e.width, e.height, len(e.encoded_image_string)]
                              for e in acc.Images(tag)]
    for tag in tags.get("tensors", []):
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "text":
            out["texts"][tag] = [[e.step, e.tensor_proto.string_val[0].decode()]
                                 for e in acc.Tensors(tag)]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
