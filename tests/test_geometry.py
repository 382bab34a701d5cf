"""Batched quaternion helpers agree with pyquaternion (what nuscenes-devkit uses)."""

import numpy as np
from pyquaternion import Quaternion

from occprep import geometry

RNG = np.random.default_rng(7)
QUATERNIONS = np.concatenate([RNG.normal(size=(20, 4)) * RNG.uniform(0.5, 2.0, size=(20, 1)),  # not unit
                              np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])])


def test_rotation_matrices_product_inverse_and_yaw_match_pyquaternion():
    others = RNG.normal(size=QUATERNIONS.shape)
    matrices = geometry.rotation_matrices(QUATERNIONS)
    products = geometry.quaternion_product(QUATERNIONS, others)
    inverses = geometry.quaternion_inverse(QUATERNIONS)
    yaws = geometry.yaw(QUATERNIONS)
    for q, o, matrix, product, inverse, yaw in zip(QUATERNIONS, others, matrices, products, inverses, yaws):
        np.testing.assert_allclose(matrix, Quaternion(q).rotation_matrix, rtol=0, atol=1e-14)
        np.testing.assert_allclose(product, (Quaternion(q) * Quaternion(o)).q, rtol=0, atol=1e-14)
        np.testing.assert_allclose(inverse, Quaternion(q).inverse.q, rtol=0, atol=1e-14)
        np.testing.assert_allclose(yaw, Quaternion(q).yaw_pitch_roll[0], rtol=0, atol=1e-14)


def test_apply_and_apply_inverse():
    matrices = geometry.rotation_matrices(QUATERNIONS)
    vectors = RNG.normal(size=(len(QUATERNIONS), 3))
    rotated = geometry.apply(matrices, vectors)
    np.testing.assert_allclose(rotated, [Quaternion(q).rotate(v) for q, v in zip(QUATERNIONS, vectors)], atol=1e-13)
    np.testing.assert_allclose(geometry.apply_inverse(matrices, rotated), vectors, atol=1e-13)



def test_arctan2_is_given_contiguous_arrays_only(monkeypatch):
    """numpy's SIMD arctan2 falls back to libm (other last bits) when a strided input's estimated span
    reaches the output buffer, which depends on where the heap put it: headings of strided matrix views
    differed from run to run (a third of CI runs), and so did UniAD's futures. Every arctan2 here gets
    contiguous arrays, whose span is exact."""
    layouts = []
    numpy_arctan2 = np.arctan2

    def recording(y, x, *args, **kwargs):
        layouts.append((np.asarray(y).flags.c_contiguous, np.asarray(x).flags.c_contiguous))
        return numpy_arctan2(y, x, *args, **kwargs)

    monkeypatch.setattr(np, "arctan2", recording)
    matrices = geometry.rotation_matrices(QUATERNIONS)
    geometry.heading(QUATERNIONS)
    geometry.yaw(QUATERNIONS)
    angles = geometry.arctan2(matrices[:, 1, 0], matrices[:, 0, 0])
    assert layouts == [(True, True)] * 3
    assert angles.tobytes() == numpy_arctan2(matrices[:, 1, 0].copy(), matrices[:, 0, 0].copy()).tobytes()


def test_an_se3_sent_to_another_process_keeps_its_memory_order_and_so_its_products():
    """An `inverse`'s rotations are a transposed view; numpy would pickle them in C order, and einsum sums
    the products of the two layouts in another order (other last bits: VAD's futures differed when
    written by a worker). Pickled, an SE3 keeps its layout and applies to the same bits."""
    import pickle

    from occprep.se3 import SE3

    rng = np.random.default_rng(3)
    transforms = SE3.from_quaternions(rng.normal(size=(500, 4)), rng.normal(size=(500, 3))).inverse()
    points, rows = rng.normal(size=(2000, 3)) * 50, rng.integers(0, 500, 2000)
    assert not transforms.rotation.flags.c_contiguous
    sent = pickle.loads(pickle.dumps(transforms))
    assert sent.rotation.strides == transforms.rotation.strides
    assert np.array_equal(sent[rows].apply(points), transforms[rows].apply(points))
    plain = pickle.loads(pickle.dumps(transforms.rotation))
    assert plain.flags.c_contiguous  # what numpy alone sends
    forward = SE3.from_quaternions(rng.normal(size=(5, 4)), rng.normal(size=(5, 3)))
    assert pickle.loads(pickle.dumps(forward)).rotation.flags.c_contiguous
    assert np.array_equal(pickle.loads(pickle.dumps(forward)).rotation, forward.rotation)
