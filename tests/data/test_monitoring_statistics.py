"""tfxline's numpy statistics against TFDV's on the same examples, and TFDV's own tools reading them."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2

from monitoring import examples, statistics, tfrecord

ROWS = 3000
# Quantiles: TFDV's come from its sketch (epsilon 0.01), ours are exact; a boundary may sit up to this
# share of the rows away in rank.
RANK_TOLERANCE = 0.01


def _example(row, header, kinds, drop_every, empty_lists):
    example = tf.train.Example()
    for index, (name, cell) in enumerate(zip(header, row)):
        if name not in kinds:
            continue
        feature = example.features.feature
        if cell == "":
            if empty_lists and index % 2:
                feature[name].SetInParent()  # an empty list, as CsvExampleGen writes a missing cell
            continue
        if name == "company" and drop_every and hash(row[0]) % drop_every == 0:
            continue  # absent, as the request log writes a missing input
        if kinds[name] == "categorical_string":
            feature[name].bytes_list.value.append(cell.encode())
        elif kinds[name] == "categorical_int":
            feature[name].int64_list.value.append(int(cell))
        else:
            feature[name].float_list.value.append(float(cell))
    return example.SerializeToString()


@pytest.fixture(scope="module", params=["tfx_bsl", "tf.data"])
def taxi_records(request, tmp_path_factory, taxi_rows):
    """Examples with missing values as CsvExampleGen writes them (an empty list, or none), decoded by tfx_bsl
    (ExampleGen's splits); and as the server logs them (absent), decoded by tf.data (request logs)."""
    from config import load_config

    config = load_config()
    header, rows = taxi_rows
    kinds = {f.name: f.kind for f in config.features}
    empty_lists = request.param == "tfx_bsl"
    records = [_example(row, header, kinds, 7, empty_lists) for row in rows[:ROWS]]
    path = tmp_path_factory.mktemp("stats") / "examples.tfrecord"
    tfrecord.write_records(str(path), records)
    if empty_lists:
        columns, rows = examples.decode(records, list(kinds))
    else:
        columns, rows = examples.read_tfrecords([str(path)], list(kinds), kinds)
    return path, kinds, columns, rows


def _by_name(dataset):
    return {f.path.step[0]: f for f in dataset.features}


def _rank_of(sorted_values, value):
    return np.searchsorted(sorted_values, value, side="right") / len(sorted_values)


def test_statistics_equal_tfdvs_on_the_same_examples(taxi_records):
    path, kinds, columns, rows = taxi_records
    expected = _by_name(tfdv.generate_statistics_from_tfrecord(str(path)).datasets[0])
    ours = statistics.dataset_statistics(columns, {name: None for name in kinds}, statistics.Options())
    assert ours.num_examples == rows == ROWS
    actual = _by_name(ours)
    assert set(actual) == set(expected)
    for name, theirs in expected.items():
        mine = actual[name]
        assert mine.type == theirs.type, name
        kind = theirs.WhichOneof("stats")
        common_theirs, common_mine = getattr(theirs, kind).common_stats, getattr(mine, kind).common_stats
        for field in ("num_non_missing", "num_missing", "min_num_values", "max_num_values", "tot_num_values"):
            assert getattr(common_mine, field) == getattr(common_theirs, field), (name, field)
        assert common_mine.avg_num_values == pytest.approx(common_theirs.avg_num_values)
        if kind == "num_stats":
            values = np.sort(columns[name].values.astype(np.float64))
            mine_num, theirs_num = mine.num_stats, theirs.num_stats
            assert mine_num.num_zeros == theirs_num.num_zeros, name
            assert (mine_num.min, mine_num.max) == (theirs_num.min, theirs_num.max), name
            assert mine_num.mean == pytest.approx(theirs_num.mean, rel=1e-6), name
            assert mine_num.std_dev == pytest.approx(theirs_num.std_dev, rel=1e-5), name
            assert abs(_rank_of(values, mine_num.median) - _rank_of(values, theirs_num.median)) <= RANK_TOLERANCE
            for mine_h, theirs_h in zip(mine_num.histograms, theirs_num.histograms):
                assert mine_h.type == theirs_h.type and len(mine_h.buckets) == len(theirs_h.buckets), name
                assert sum(b.sample_count for b in mine_h.buckets) == pytest.approx(
                    sum(b.sample_count for b in theirs_h.buckets)), name
                for a, b in zip(mine_h.buckets, theirs_h.buckets):
                    if mine_h.type == statistics_pb2.Histogram.STANDARD:
                        assert (a.low_value, a.high_value) == pytest.approx((b.low_value, b.high_value)), name
                        # TFDV interpolates the counts of equal-width buckets from its quantiles.
                        assert abs(a.sample_count - b.sample_count) <= RANK_TOLERANCE * len(values) * 2, name
                    else:
                        assert abs(_rank_of(values, a.high_value) - _rank_of(values, b.high_value)) <= \
                            RANK_TOLERANCE, name
        else:
            mine_s, theirs_s = mine.string_stats, theirs.string_stats
            assert mine_s.unique == theirs_s.unique, name
            assert [(v.value, v.frequency) for v in mine_s.top_values] == \
                [(v.value, v.frequency) for v in theirs_s.top_values], name
            assert [(b.label, b.sample_count) for b in mine_s.rank_histogram.buckets] == \
                [(b.label, b.sample_count) for b in theirs_s.rank_histogram.buckets], name
            assert mine_s.avg_length == pytest.approx(theirs_s.avg_length), name


def _taxi_profile(taxi_rows, rows, options=statistics.Options(), name="training"):
    from config import load_config
    from monitoring import table

    config = load_config()
    header, all_rows = taxi_rows
    kinds = {f.name: f.kind for f in config.features}
    columns = table.from_rows([dict(zip(header, row)) for row in all_rows[rows]], kinds)
    return statistics.profile(columns, kinds, options, name), kinds, columns


def test_tfdv_reads_and_validates_the_statistics(taxi_rows, tmp_path):
    from config import load_config

    reference, kinds, _ = _taxi_profile(taxi_rows, slice(0, 5000))
    window, _, _ = _taxi_profile(taxi_rows, slice(5000, 10000), name="window")
    path = statistics.write_profile(str(tmp_path), "train", reference)
    loaded = tfdv.load_stats_binary(path)
    assert loaded.datasets[0] == reference.proto
    assert statistics.read_profile(path).features.keys() == reference.features.keys()
    schema = tfdv.load_schema_text(load_config().schema_.curated_path)
    for feature in schema.feature:  # thresholds no sample can stay under, so TFDV reports every measure
        for comparator in (feature.drift_comparator, feature.skew_comparator):
            for field in ("infinity_norm", "jensen_shannon_divergence"):
                if comparator.HasField(field):
                    getattr(comparator, field).threshold = 1e-9
    anomalies = tfdv.validate_statistics(statistics.as_list(window.proto), schema, previous_statistics=loaded,
                                         serving_statistics=loaded)
    drift = {".".join(info.path.step): info for info in anomalies.drift_skew_info}
    assert set(drift) == set(kinds)
    assert all(info.drift_measurements[0].value > 0 and info.skew_measurements[0].value > 0
               for info in drift.values())


def test_many_distinct_values_are_hashed_not_truncated(taxi_rows):
    options = statistics.Options(max_values=10, hash_buckets=64)
    reference, _, columns = _taxi_profile(taxi_rows, slice(0, 6000), options)
    company = reference.features["company"]
    assert company.hash_buckets == 64
    assert company.counts.sum() + company.missing == 6000  # every row is in a bucket or missing
    window, _, _ = _taxi_profile(taxi_rows, slice(6000, 12000), options)
    from monitoring import compare

    result = compare.compare_feature("company", company, window.features["company"], 0.01)
    assert not result.drift and "hash buckets" in result.note


def test_new_values_and_out_of_range_shares(taxi_rows):
    from monitoring import compare, table

    reference, kinds, _ = _taxi_profile(taxi_rows, slice(0, 4000))
    header, rows = taxi_rows
    window_rows = [dict(zip(header, row)) for row in rows[4000:6000]]
    for index, row in enumerate(window_rows):
        if index % 4 == 0:
            row["payment_type"] = "Bitcoin"
            row["fare"] = "100000"
    window = statistics.profile(table.from_rows(window_rows, kinds), kinds, statistics.Options(), align=reference)
    payment = compare.compare_feature("payment_type", reference.features["payment_type"],
                                      window.features["payment_type"], 0.01)
    assert payment.drift and payment.new_share == pytest.approx(0.25)
    assert payment.effect["value_of"] == "Bitcoin" and payment.effect["value"] == pytest.approx(25.0)
    fare = compare.compare_feature("fare", reference.features["fare"], window.features["fare"], 0.01)
    assert fare.drift and fare.out_of_range_share == pytest.approx(0.25, abs=0.01)
